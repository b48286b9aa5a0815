"""One trace as waterfall rows: depth-first, children under parents, long runs collapsed.

The matplotlib waterfall (:func:`~llmgine.analysis.plot_waterfall`) and the notebook's
HTML view draw the same rows, the way Phoenix shows a trace: indented by depth,
coloured by kind, errors in red with their message, tokens on LLM calls. A parent
with many children of one name (a loop of 300 tool calls) shows the first few and
the last, and one row standing for the ones between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["ERROR_COLOUR", "KIND_COLOURS", "WaterfallRow", "kind_of", "latest_trace", "trace_rows"]

KIND_COLOURS = {
    "command": "#4c78a8",
    "LLM": "#9467bd",
    "tool": "#f58518",
    "custom": "#54a24b",
}
"""Bar colour per kind of span."""
ERROR_COLOUR = "#e45756"
COLLAPSED_COLOUR = "#bab0ac"


def kind_of(span_kind: Any) -> str:
    """The waterfall's kind of a span: ``command``, ``LLM``, ``tool`` or ``custom``."""
    return {"CHAIN": "command", "LLM": "LLM", "TOOL": "tool"}.get(str(span_kind), "custom")


@dataclass
class WaterfallRow:
    """One row of a waterfall: a span, or a run of collapsed sibling spans."""

    span_id: str | None
    depth: int
    name: str
    kind: str
    start_ms: float
    duration_ms: float
    status: str
    message: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    collapsed: int = 0
    """How many spans this row stands for, when it is a collapsed run (else 0)."""
    errors: int = 0
    """Spans in error among the collapsed ones."""
    extent_ms: float | None = None
    """How long the collapsed run lasted, first start to last end (else the duration)."""

    @property
    def width_ms(self) -> float:
        """The bar's length."""
        return self.duration_ms if self.extent_ms is None else self.extent_ms

    @property
    def label(self) -> str:
        """The row's text: indent, name, duration, tokens, error."""
        indent = "  " * self.depth
        if self.collapsed:
            text = f"{indent}… {self.collapsed} more {self.name}  {self.duration_ms:.1f} ms total"
            return text + (f"  ({self.errors} failed)" if self.errors else "")
        text = f"{indent}{self.name}  {self.duration_ms:.1f} ms"
        if self.input_tokens is not None or self.output_tokens is not None:
            text += f"  {self.input_tokens or 0:,} → {self.output_tokens or 0:,} tokens"
        if self.status == "ERROR":
            text += f"  ERROR: {self.message or 'failed'}"
        return text


def latest_trace(spans: pd.DataFrame) -> str:
    """The trace id of the most recently started span."""
    return str(spans.sort_values("start_time")["context.trace_id"].iloc[-1])


def _int(value: Any) -> int | None:
    try:
        return None if value is None or pd.isna(value) else int(value)
    except (TypeError, ValueError):
        return None


def trace_rows(
    spans: pd.DataFrame, trace_id: str, *, keep_first: int = 3, keep_last: int = 1
) -> list[WaterfallRow]:
    """The waterfall rows of one trace of a :func:`~llmgine.analysis.spans_frame`.

    Args:
        spans: Spans, indexed by ``context.span_id``.
        trace_id: The trace to lay out.
        keep_first: Siblings of one name shown before a run is collapsed.
        keep_last: Siblings of one name shown after the collapsed run.
    """
    trace = spans[spans["context.trace_id"] == trace_id]
    if trace.empty:
        return []
    origin = trace["start_time"].min()
    ids = set(trace.index)
    children: dict[Any, list[Any]] = {}
    for span_id, parent in trace.sort_values("start_time")["parent_id"].items():
        children.setdefault(parent if parent in ids else None, []).append(span_id)

    def row(span_id: Any, depth: int) -> WaterfallRow:
        span = trace.loc[span_id]
        duration = float(span["duration_ms"]) if pd.notna(span["duration_ms"]) else 0.0
        message = span["status_message"] if isinstance(span["status_message"], str) else None
        return WaterfallRow(
            span_id=str(span_id),
            depth=depth,
            name=str(span["name"]),
            kind=kind_of(span["span_kind"]),
            start_ms=(span["start_time"] - origin).total_seconds() * 1000,
            duration_ms=duration,
            status=str(span["status_code"]),
            message=message,
            input_tokens=_int(span.get("attributes.gen_ai.usage.input_tokens")),
            output_tokens=_int(span.get("attributes.gen_ai.usage.output_tokens")),
        )

    out: list[WaterfallRow] = []

    def visit(span_id: Any, depth: int) -> None:
        out.append(row(span_id, depth))
        siblings = children.get(span_id, [])
        by_name: dict[str, list[Any]] = {}
        for child in siblings:
            by_name.setdefault(str(trace.at[child, "name"]), []).append(child)
        hidden = {
            child
            for group in by_name.values()
            if len(group) > keep_first + keep_last + 1
            for child in group[keep_first : len(group) - keep_last]
        }
        done: set[str] = set()
        for child in siblings:
            if child not in hidden:
                visit(child, depth + 1)
                continue
            name = str(trace.at[child, "name"])
            if name in done:
                continue
            done.add(name)
            run = [c for c in by_name[name] if c in hidden]
            rows = trace.loc[run]
            start = (rows["start_time"].min() - origin).total_seconds() * 1000
            ends = rows["end_time"].dropna()
            end = (ends.max() - origin).total_seconds() * 1000 if len(ends) else start
            out.append(
                WaterfallRow(
                    span_id=None,
                    depth=depth + 1,
                    name=name,
                    kind=kind_of(rows["span_kind"].iloc[0]),
                    start_ms=start,
                    duration_ms=float(rows["duration_ms"].fillna(0).sum()),
                    status="ERROR" if (rows["status_code"] == "ERROR").any() else "OK",
                    collapsed=len(run),
                    errors=int((rows["status_code"] == "ERROR").sum()),
                    extent_ms=max(end - start, 0.0),
                )
            )

    for root in children.get(None, []):
        visit(root, 0)
    return out
