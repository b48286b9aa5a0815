"""Metric and trace events: the observability messages every bus understands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmgine.messages.base import as_utc
from llmgine.messages.events import Event

__all__ = ["Metric", "MetricEvent", "SpanContext", "TraceEvent"]


class Metric(BaseModel):
    """One measured value, e.g. ``Metric(name="files_processed", value=10)``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """What is measured, e.g. ``gen_ai.usage.input_tokens``."""
    value: float | int
    """The measured value."""
    unit: str | None = None
    """The unit of ``value``, e.g. ``"ms"`` or ``"tokens"``."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Dimensions to group by, e.g. ``{"model": "offline"}``."""


class MetricEvent(Event):
    """One or more metrics, published like any other event."""

    metrics: list[Metric]


@dataclass(frozen=True, slots=True)
class SpanContext:
    """Identifies a span: its trace, itself, and its parent span if any.

    A frozen dataclass rather than a model: one is made for every ``execute()``.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None = None


class TraceEvent(Event):
    """The start or the end of a span.

    A span is a start event (with ``start_time``) and an end event (with
    ``end_time``, ``status`` and ``duration_ms``) that share one ``span_context``.
    Times may be datetimes or ISO strings; naive times are taken as local time.
    """

    name: str
    """What the span covers, e.g. the command type."""
    span_context: SpanContext
    start_time: datetime | None = None
    end_time: datetime | None = None
    status: str | None = None
    """``"OK"`` or ``"ERROR"`` on an end event."""
    status_message: str | None = None
    """Why the span ended in error."""
    duration_ms: float | None = None
    span_kind: str = "INTERNAL"
    """``"CHAIN"`` for commands, ``"LLM"`` for model calls, ``"TOOL"`` for tool runs."""
    attributes: dict[str, Any] = Field(default_factory=dict)
    """Span attributes, with OpenTelemetry GenAI names for LLM calls and tools."""

    @model_validator(mode="after")
    def _times_in_utc(self) -> TraceEvent:
        # One validator for both fields: spans are on the hot path of every execute().
        start, end = self.start_time, self.end_time
        if start is not None and start.tzinfo is not UTC:
            self.start_time = as_utc(start)
        if end is not None and end.tzinfo is not UTC:
            self.end_time = as_utc(end)
        return self
