"""Plots of a log: a trace waterfall, a metric over time, command latency by type.

Every function draws on ``ax`` (a new figure when ``None``) and returns the Axes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from llmgine.analysis.span_tree import (
    COLLAPSED_COLOUR,
    ERROR_COLOUR,
    KIND_COLOURS,
    latest_trace,
    trace_rows,
)
from llmgine.errors import ConfigurationError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_command_latency", "plot_metric", "plot_waterfall"]


def _axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new = plt.subplots(figsize=size)
    return new


def plot_waterfall(
    spans: pd.DataFrame,
    trace_id: str | None = None,
    ax: Axes | None = None,
    *,
    max_rows: int = 80,
    page: int = 0,
) -> Axes:
    """Draw one trace like Phoenix does: bars by start and duration, nested under parents.

    Spans are indented by depth and coloured by kind (command, LLM, tool, custom);
    a span in error is red, with its message; an LLM call shows its tokens. A parent
    with many children of one name shows the first three, the last, and one grey row
    for the run between; a trace still longer than ``max_rows`` rows is drawn a page
    at a time.

    Args:
        spans: A frame from :func:`~llmgine.analysis.spans_frame`.
        trace_id: The trace to draw; ``None`` draws the most recent one.
        ax: Where to draw.
        max_rows: Rows per page.
        page: Which page of rows to draw (from 0).
    """
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    if spans.empty:
        raise ConfigurationError("There are no spans to draw: the log holds no TraceEvent.")
    if trace_id is None:
        trace_id = latest_trace(spans)
    rows = trace_rows(spans, trace_id)
    if not rows:
        raise ConfigurationError(f"No span belongs to trace {trace_id!r}.")
    pages = (len(rows) + max_rows - 1) // max_rows
    if not 0 <= page < pages:
        raise ConfigurationError(f"Trace {trace_id[:12]} has {pages} page(s) of rows; page={page}.")
    shown = rows[page * max_rows : (page + 1) * max_rows]
    if ax is None:
        height = 0.3 * len(shown) + 1.6
        ax = _axes(None, (13, height))
        # The tree on the left, as in Phoenix; room below for the axis label, above for the title.
        ax.figure.subplots_adjust(left=0.42, right=0.98, bottom=0.6 / height, top=1 - 0.45 / height)
    labels = blended_transform_factory(ax.transAxes, ax.transData)
    for y, row in enumerate(shown):
        if row.collapsed:
            colour = COLLAPSED_COLOUR
        else:
            colour = ERROR_COLOUR if row.status == "ERROR" else KIND_COLOURS[row.kind]
        ax.barh(
            y,
            max(row.width_ms, 0.001),
            left=row.start_ms,
            color=colour,
            height=0.62,
            alpha=0.8 if row.status == "ERROR" else 0.6,
            hatch="//" if row.collapsed else None,
            edgecolor=ERROR_COLOUR if row.status == "ERROR" else colour,
        )
        ax.text(
            -0.72,
            y,
            row.label if len(row.label) <= 76 else row.label[:75] + "…",
            transform=labels,
            va="center",
            ha="left",
            fontsize=8,
            family="monospace",
            color="#b00020" if row.status == "ERROR" and not row.collapsed else "black",
        )
    ax.set_yticks([])
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_xlabel("ms since the trace started")
    title = f"trace {trace_id[:12]}: {sum(max(r.collapsed, 1) for r in rows)} spans"
    if pages > 1:
        title += f", rows {page * max_rows + 1}-{page * max_rows + len(shown)} of {len(rows)}"
        title += f" (page {page + 1} of {pages})"
    ax.set_title(title, loc="left")
    legend = [Patch(color=c, label=k) for k, c in KIND_COLOURS.items()]
    legend.append(Patch(color=ERROR_COLOUR, label="error"))
    ax.legend(
        handles=legend,
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=7,
        ncol=5,
        frameon=False,
    )
    return ax


def plot_metric(metrics: pd.DataFrame, name: str, ax: Axes | None = None) -> Axes:
    """Draw one metric's values over time.

    Args:
        metrics: A frame from :func:`~llmgine.analysis.metrics_frame`.
        name: The metric's name, e.g. ``"llm.latency_ms"``.
        ax: Where to draw.
    """
    rows = metrics[metrics["name"] == name].sort_values("timestamp")
    if rows.empty:
        known = ", ".join(sorted(metrics["name"].unique())) or "none"
        raise ConfigurationError(f"No metric named {name!r}; the log has: {known}.")
    ax = _axes(ax, (10, 3.5))
    ax.plot(rows["timestamp"], rows["value"], marker=".", linewidth=1)
    _readable_times(ax)
    unit = rows["unit"].dropna()
    ax.set_ylabel(f"{name} ({unit.iloc[0]})" if len(unit) else name)
    ax.set_xlabel("time (UTC)")
    ax.set_title(name)
    return ax


def _readable_times(ax: Axes) -> None:
    """Time ticks a person reads: ``20:53:00.41`` (not ``53:00.410000``), the date aside."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(
        ConciseDateFormatter(  # type: ignore[no-untyped-call]
            locator,
            # years, months, days, hours, minutes, seconds and below
            formats=["%Y", "%b", "%b %d", "%H:%M", "%H:%M", "%H:%M:%S.%f"],
            zero_formats=["", "%Y", "%b", "%b %d", "%H:%M", "%H:%M:%S"],
            offset_formats=["", "%Y", "%Y-%m", "%Y-%m-%d", "%Y-%m-%d", "%Y-%m-%d"],
        )
    )


def plot_command_latency(commands: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Draw the distribution of command durations by command type (a box plot).

    Args:
        commands: A frame from :func:`~llmgine.analysis.commands_frame`.
        ax: Where to draw.
    """
    done = commands.dropna(subset=["duration_ms"])
    if done.empty:
        raise ConfigurationError("No finished command to draw.")
    groups = done.groupby("command_type")["duration_ms"]
    names = [str(n) for n in groups.groups]
    ax = _axes(ax, (10, 0.5 * len(names) + 1.5))
    ax.boxplot(
        [groups.get_group(n).to_numpy() for n in names], orientation="horizontal", tick_labels=names
    )
    ax.set_xlabel("duration (ms)")
    ax.set_title("command latency by type")
    return ax
