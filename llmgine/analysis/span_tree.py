"""One trace as waterfall rows: depth-first, children under parents, long runs collapsed.

The matplotlib waterfall (:func:`~llmgine.analysis.plot_waterfall`) and the notebook's
HTML view draw the same rows, the way Phoenix shows a trace: indented by depth,
coloured by kind, errors in red with their message, tokens on LLM calls. A parent
with many children of one name (a loop of 300 tool calls) shows the first few and
the last, and one row standing for the ones between.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
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
MAX_INDENT = 12
"""Depth beyond which a row is no longer indented further; its depth is written instead."""
CYCLE_NOTE = "parent cycle broken"
"""The note on a span whose parent links lead back to itself, drawn as a root."""
_REMOTE = "attributes.llmgine.remote.caller"

logger = logging.getLogger(__name__)


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
    tag: str | None = None
    """What tells this row from others of the same name in its trace: ``#2``, ``#2 worker``
    (a span run for another process), ``#4-#299`` for a collapsed run."""
    note: str | None = None
    """Something wrong with the span's place in the tree, e.g. :data:`CYCLE_NOTE`."""

    @property
    def width_ms(self) -> float:
        """The bar's length."""
        return self.duration_ms if self.extent_ms is None else self.extent_ms

    @property
    def label(self) -> str:
        """The row's text: indent, name and tag, duration, tokens, error, note."""
        indent = "  " * min(self.depth, MAX_INDENT)
        if self.depth > MAX_INDENT:
            indent += f"[depth {self.depth}] "
        if self.collapsed:
            name = f"{self.name} ({self.tag})" if self.tag else self.name
            text = f"{indent}… {self.collapsed} more {name}  {self.duration_ms:.1f} ms total"
            return text + (f"  ({self.errors} failed)" if self.errors else "")
        name = f"{self.name} {self.tag}" if self.tag else self.name
        text = f"{indent}{name}  {self.duration_ms:.1f} ms"
        if self.input_tokens is not None or self.output_tokens is not None:
            text += f"  {self.input_tokens or 0:,} → {self.output_tokens or 0:,} tokens"
        if self.status == "ERROR":
            text += f"  ERROR: {self.message or 'failed'}"
        if self.note:
            text += f"  ({self.note})"
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

    Spans whose parent links form a cycle (a damaged or hand-made log) are drawn from
    the earliest of them, marked :data:`CYCLE_NOTE`, and a warning is logged; a chain
    of any depth is laid out without recursion. Rows of one name that occur more than
    once in the trace carry a ``tag`` (``#1``, ``#2 worker``) that tells them apart.

    Args:
        spans: Spans, indexed by ``context.span_id``.
        trace_id: The trace to lay out.
        keep_first: Siblings of one name shown before a run is collapsed.
        keep_last: Siblings of one name shown after the collapsed run.
    """
    trace = spans[spans["context.trace_id"] == trace_id]
    if trace.empty:
        return []
    trace = trace[~trace.index.duplicated(keep="first")]
    origin = trace["start_time"].min()
    ids = set(trace.index)
    parents: dict[Any, Any] = {}
    children: dict[Any, list[Any]] = {}
    ordered = list(trace.sort_values("start_time", kind="stable")["parent_id"].items())
    own_parent = {span_id for span_id, parent in ordered if parent == span_id}
    for span_id, parent in ordered:
        known = parent if parent in ids and span_id not in own_parent else None
        parents[span_id] = known
        children.setdefault(known, []).append(span_id)
    names = {span_id: str(name) for span_id, name in trace["name"].items()}

    def row(span_id: Any, depth: int) -> WaterfallRow:
        span = trace.loc[span_id]
        duration = float(span["duration_ms"]) if pd.notna(span["duration_ms"]) else 0.0
        message = span["status_message"] if isinstance(span["status_message"], str) else None
        return WaterfallRow(
            span_id=str(span_id),
            depth=depth,
            name=names[span_id],
            kind=kind_of(span["span_kind"]),
            start_ms=(span["start_time"] - origin).total_seconds() * 1000,
            duration_ms=duration,
            status=str(span["status_code"]),
            message=message,
            input_tokens=_int(span.get("attributes.gen_ai.usage.input_tokens")),
            output_tokens=_int(span.get("attributes.gen_ai.usage.output_tokens")),
        )

    def collapsed(name: str, run: list[Any], depth: int) -> WaterfallRow:
        rows = trace.loc[run]
        start = (rows["start_time"].min() - origin).total_seconds() * 1000
        ends = rows["end_time"].dropna()
        end = (ends.max() - origin).total_seconds() * 1000 if len(ends) else start
        return WaterfallRow(
            span_id=None,
            depth=depth,
            name=name,
            kind=kind_of(rows["span_kind"].iloc[0]),
            start_ms=start,
            duration_ms=float(rows["duration_ms"].fillna(0).sum()),
            status="ERROR" if (rows["status_code"] == "ERROR").any() else "OK",
            collapsed=len(run),
            errors=int((rows["status_code"] == "ERROR").sum()),
            extent_ms=max(end - start, 0.0),
        )

    def entries(span_id: Any, depth: int) -> Iterator[Any]:
        """A span's children to visit, with a collapsed row in place of each long run."""
        siblings = children.get(span_id, [])
        by_name: dict[str, list[Any]] = {}
        for child in siblings:
            by_name.setdefault(names[child], []).append(child)
        hidden = {
            child
            for group in by_name.values()
            if len(group) > keep_first + keep_last + 1
            for child in group[keep_first : len(group) - keep_last]
        }
        done: set[str] = set()
        for child in siblings:
            if child not in hidden:
                yield child
            elif names[child] not in done:
                done.add(names[child])
                yield collapsed(
                    names[child], [c for c in by_name[names[child]] if c in hidden], depth
                )

    out: list[WaterfallRow] = []
    visited: set[Any] = set()

    def lay_out(root: Any, note: str | None = None) -> None:
        first = row(root, 0)
        first.note = note
        out.append(first)
        visited.add(root)
        stack = [(entries(root, 1), 1)]
        while stack:
            pending, depth = stack[-1]
            entry = next(pending, None)
            if entry is None:
                stack.pop()
            elif isinstance(entry, WaterfallRow):
                out.append(entry)
            elif entry not in visited:
                visited.add(entry)
                out.append(row(entry, depth))
                stack.append((entries(entry, depth + 1), depth + 1))

    for root in children.get(None, []):
        lay_out(root, CYCLE_NOTE if root in own_parent else None)
    broken = len(own_parent) + _break_cycles(ordered, parents, visited, lay_out)
    if broken:
        logger.warning(
            "trace %s: the parent links of %d span(s) form a cycle; each cycle is drawn "
            "from its earliest span, marked %r",
            trace_id,
            broken,
            CYCLE_NOTE,
        )
    _tag_repeated_names(out, trace)
    return out


def _break_cycles(
    ordered: list[tuple[Any, Any]],
    parents: dict[Any, Any],
    visited: set[Any],
    lay_out: Callable[[Any, str | None], None],
) -> int:
    """Lay out the spans no root reaches (their parents form cycles); return how many."""
    count = 0
    starts = {span_id: i for i, (span_id, _) in enumerate(ordered)}
    for span_id, _ in ordered:  # earliest first
        if span_id in visited:
            continue
        # Walk up to a span seen twice: it lies on the cycle above ``span_id``.
        path: list[Any] = []
        on_path: set[Any] = set()
        current = span_id
        while current not in on_path and current not in visited:
            path.append(current)
            on_path.add(current)
            current = parents.get(current)
        if current in visited or current is None:
            continue  # reached from a root laid out meanwhile
        cycle = path[path.index(current) :]
        count += len(cycle)
        lay_out(min(cycle, key=starts.__getitem__), CYCLE_NOTE)
    return count


def _tag_repeated_names(rows: list[WaterfallRow], trace: pd.DataFrame) -> None:
    """Number the rows of names that occur more than once; mark spans run for another process."""
    totals: dict[str, int] = {}
    for r in rows:
        totals[r.name] = totals.get(r.name, 0) + max(r.collapsed, 1)
    seen: dict[str, int] = {}
    remote = trace[_REMOTE] if _REMOTE in trace.columns else None
    for r in rows:
        first = seen.get(r.name, 0) + 1
        seen[r.name] = first + max(r.collapsed, 1) - 1
        if totals[r.name] < 2:
            continue
        if r.collapsed:
            r.tag = f"#{first}-#{seen[r.name]}"
            continue
        r.tag = f"#{first}"
        if remote is not None and r.span_id is not None:
            caller = remote.get(r.span_id)
            if isinstance(caller, str) and caller:
                r.tag += " worker"
