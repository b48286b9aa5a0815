"""The console printer: a short line per metric and per finished span, with LLM costs."""

from __future__ import annotations

import sys
from typing import TextIO

from llmgine.observability.events import MetricEvent, TraceEvent
from llmgine.observability.sinks import Record
from llmgine.observability.usd import format_usd

__all__ = ["ConsolePrinter"]


class ConsolePrinter:
    """A sink writing readable lines for metrics and span ends to a stream.

    Args:
        stream: Where to write; ``None`` means ``sys.stdout`` at the time of writing
            (so a notebook's redirected stdout is honoured).
        metrics: Print metric events.
        traces: Print the end of every span.
    """

    def __init__(
        self, stream: TextIO | None = None, *, metrics: bool = True, traces: bool = True
    ) -> None:
        self.stream = stream
        self.metrics = metrics
        self.traces = traces

    name = "console"

    def __repr__(self) -> str:
        return f"ConsolePrinter(metrics={self.metrics}, traces={self.traces})"

    def write(self, record: Record) -> None:
        """Print the lines of a metric event or a span's end; ignore other messages."""
        message = record.message
        if isinstance(message, MetricEvent):
            self.on_metric(message)
        elif isinstance(message, TraceEvent):
            self.on_trace(message)

    def flush(self) -> None:
        """Nothing to do: lines go straight to the stream."""

    def close(self) -> None:
        """Nothing to do: the stream is not the printer's to close."""

    def _write(self, text: str) -> None:
        (self.stream or sys.stdout).write(text + "\n")

    def on_metric(self, event: MetricEvent) -> None:
        """Print one line per metric of ``event``."""
        if not self.metrics:
            return
        for metric in event.metrics:
            unit = f" {metric.unit}" if metric.unit else ""
            tags = "".join(f" {k}={v}" for k, v in sorted(metric.tags.items()))
            self._write(f"[metric] {metric.name}={metric.value:.4g}{unit}{tags}")

    def on_trace(self, event: TraceEvent) -> None:
        """Print one line when a span ends; span starts are not printed."""
        if not self.traces or event.end_time is None:
            return
        duration = "" if event.duration_ms is None else f" {event.duration_ms:.1f} ms"
        status = event.status or "UNSET"
        message = f" ({event.status_message})" if event.status_message else ""
        self._write(
            f"[span] {event.name} {status}{duration}{message}{_cost(event)}"
            f" trace={event.span_context.trace_id[:8]}"
        )


def _cost(event: TraceEvent) -> str:
    """`` $0.00045``, `` cached $0.00`` or `` price unknown`` for an LLM call; else ``""``."""
    attributes = event.attributes
    cost = attributes.get("llmgine.cost_usd")
    if "gen_ai.usage.input_tokens" not in attributes:
        return ""  # not an LLM call that answered
    cached = " cached" if attributes.get("llmgine.cache.hit") else ""
    return f"{cached} {format_usd(cost if isinstance(cost, int | float) else None)}"
