"""Plots of a log: a trace waterfall, a metric over time, command latency by type.

Every function draws on ``ax`` (a new figure when ``None``) and returns the Axes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_command_latency", "plot_metric", "plot_waterfall"]

_STATUS_COLOURS = {"OK": "#4c78a8", "ERROR": "#e45756", "UNSET": "#bab0ac"}


def _axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new = plt.subplots(figsize=size)
    return new


def _tree_order(spans: pd.DataFrame) -> list[tuple[str, int]]:
    """Span ids depth-first by start time, each with its depth."""
    children: dict[Any, list[str]] = {}
    ids = set(spans.index)
    for span_id, row in spans.sort_values("start_time").iterrows():
        parent = row["parent_id"] if row["parent_id"] in ids else None
        children.setdefault(parent, []).append(str(span_id))
    order: list[tuple[str, int]] = []
    stack = [(span_id, 0) for span_id in reversed(children.get(None, []))]
    while stack:
        span_id, depth = stack.pop()
        order.append((span_id, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(span_id, [])))
    return order


def plot_waterfall(
    spans: pd.DataFrame, trace_id: str | None = None, ax: Axes | None = None
) -> Axes:
    """Draw one trace's spans as bars by start and duration, nested under their parents.

    Args:
        spans: A frame from :func:`~llmgine.analysis.spans_frame`.
        trace_id: The trace to draw; ``None`` draws the most recent one.
        ax: Where to draw.
    """
    if spans.empty:
        raise ValueError("There are no spans to draw: the log holds no TraceEvent.")
    if trace_id is None:
        trace_id = str(spans.sort_values("start_time")["context.trace_id"].iloc[-1])
    trace = spans[spans["context.trace_id"] == trace_id]
    if trace.empty:
        raise ValueError(f"No span belongs to trace {trace_id!r}.")
    origin = trace["start_time"].min()
    order = _tree_order(trace)
    ax = _axes(ax, (10, 0.4 * len(order) + 1.5))
    for row, (span_id, depth) in enumerate(order):
        span = trace.loc[span_id]
        start_ms = (span["start_time"] - origin).total_seconds() * 1000
        duration = span["duration_ms"] if pd.notna(span["duration_ms"]) else 0.0
        colour = _STATUS_COLOURS.get(str(span["status_code"]), "#bab0ac")
        ax.barh(row, max(duration, 0.001), left=start_ms, color=colour, height=0.6, alpha=0.55)
        ax.text(
            start_ms,
            row,
            f"{'  ' * depth}{span['name']}  {duration:.1f} ms",
            va="center",
            ha="left",
            fontsize=8,
        )
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_xlabel("ms since the trace started")
    ax.set_title(f"trace {trace_id[:12]}")
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
        raise ValueError(f"No metric named {name!r}; the log has: {known}.")
    ax = _axes(ax, (10, 3.5))
    ax.plot(rows["timestamp"], rows["value"], marker=".", linewidth=1)
    unit = rows["unit"].dropna()
    ax.set_ylabel(f"{name} ({unit.iloc[0]})" if len(unit) else name)
    ax.set_xlabel("time (UTC)")
    ax.set_title(name)
    return ax


def plot_command_latency(commands: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Draw the distribution of command durations by command type (a box plot).

    Args:
        commands: A frame from :func:`~llmgine.analysis.commands_frame`.
        ax: Where to draw.
    """
    done = commands.dropna(subset=["duration_ms"])
    if done.empty:
        raise ValueError("No finished command to draw.")
    groups = done.groupby("command_type")["duration_ms"]
    names = [str(n) for n in groups.groups]
    ax = _axes(ax, (10, 0.5 * len(names) + 1.5))
    ax.boxplot(
        [groups.get_group(n).to_numpy() for n in names], orientation="horizontal", tick_labels=names
    )
    ax.set_xlabel("duration (ms)")
    ax.set_title("command latency by type")
    return ax
