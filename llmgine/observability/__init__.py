"""Observability: metrics, trace spans, the JSONL log and the console printer."""

from llmgine.observability.console import ConsolePrinter
from llmgine.observability.events import Metric, MetricEvent, SpanContext, TraceEvent
from llmgine.observability.jsonl import JsonlLog
from llmgine.observability.spans import Span, current_span

__all__ = [
    "ConsolePrinter",
    "JsonlLog",
    "Metric",
    "MetricEvent",
    "Span",
    "SpanContext",
    "TraceEvent",
    "current_span",
]
