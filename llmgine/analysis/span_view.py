"""Spans as a notebook shows them: a DataFrame that displays as Phoenix-like waterfalls.

``%llmgine spans`` returns a :class:`SpansFrame`: every DataFrame operation works
on it as on ``spans_frame``'s result (and returns a plain DataFrame), but a cell
that ends with it draws the latest traces as HTML waterfalls: spans indented under
their parents, coloured by kind, errors in red with their message, tokens on LLM
calls, long runs of repeated children collapsed.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from llmgine.analysis.span_tree import (
    COLLAPSED_COLOUR,
    ERROR_COLOUR,
    KIND_COLOURS,
    MAX_INDENT,
    WaterfallRow,
    trace_rows,
)

__all__ = ["SpansFrame", "waterfall_html"]

_MAX_ROWS = 200


def _row_html(row: WaterfallRow, scale: float) -> str:
    if row.collapsed:
        colour = COLLAPSED_COLOUR
    else:
        colour = ERROR_COLOUR if row.status == "ERROR" else KIND_COLOURS[row.kind]
    left = row.start_ms * scale
    width = max(row.width_ms * scale, 0.3)
    text_colour = "#b00020" if row.status == "ERROR" and not row.collapsed else "inherit"
    label = html.escape(row.label.strip())
    pad = 1.2 * min(row.depth, MAX_INDENT)
    bar = (
        f"<div style='position:relative;height:14px;background:#f3f3f3'>"
        f"<div style='position:absolute;left:{left:.2f}%;width:{width:.2f}%;height:14px;"
        f"background:{colour};opacity:0.75'></div></div>"
    )
    return (
        f"<tr data-kind='{row.kind}' data-status='{html.escape(row.status)}'>"
        f"<td style='text-align:left;white-space:nowrap;padding-left:{pad:.1f}em;"
        f"color:{text_colour}'><span style='color:{colour}'>&#9632;</span> {label}</td>"
        f"<td style='width:45%'>{bar}</td></tr>"
    )


def waterfall_html(spans: pd.DataFrame, *, max_traces: int = 5) -> str:
    """The latest ``max_traces`` traces of ``spans`` as HTML waterfalls (escaped)."""
    if spans.empty:
        return "<div class='llmgine-spans'><i>no spans in the log yet</i></div>"
    starts = spans.groupby("context.trace_id")["start_time"].min().sort_values()
    shown = list(starts.index[-max_traces:])[::-1]
    parts = ["<div class='llmgine-spans'>"]
    legend = " ".join(
        f"<span style='color:{c}'>&#9632;</span> {k}"
        for k, c in [*KIND_COLOURS.items(), ("error", ERROR_COLOUR)]
    )
    parts.append(f"<div style='font-size:smaller'>{legend}</div>")
    for trace_id in shown:
        rows = trace_rows(spans, str(trace_id))
        total = max((r.start_ms + r.width_ms for r in rows), default=0.0) or 1.0
        count = sum(max(r.collapsed, 1) for r in rows)
        head = f"trace {html.escape(str(trace_id)[:12])}: {count} spans, {total:.1f} ms"
        body = "".join(_row_html(r, 100.0 / total) for r in rows[:_MAX_ROWS])
        more = len(rows) - _MAX_ROWS
        if more > 0:
            body += (
                f"<tr><td colspan=2><i>… {more} more rows: use plot_waterfall(page=…)</i></td></tr>"
            )
        parts.append(
            f"<details open><summary><b>{head}</b></summary><table>{body}</table></details>"
        )
    hidden = len(starts) - len(shown)
    if hidden > 0:
        parts.append(f"<div><i>{hidden} older trace(s) not shown; the frame has them all</i></div>")
    parts.append("</div>")
    return "".join(parts)


class SpansFrame(pd.DataFrame):
    """A spans DataFrame that displays as waterfalls in a notebook.

    Everything else is a plain DataFrame: operations on it return ``pd.DataFrame``.
    """

    @property
    def _constructor(self) -> Any:
        return pd.DataFrame

    def _repr_html_(self) -> str:
        return waterfall_html(self)
