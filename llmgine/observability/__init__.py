"""Observability: metrics, trace spans, the envelope codec and the sinks (log, console)."""

from llmgine.observability.codec import Envelope, decode, encode, read_log
from llmgine.observability.console import ConsolePrinter
from llmgine.observability.events import Metric, MetricEvent, SpanContext, TraceEvent
from llmgine.observability.jsonl import JsonlLog
from llmgine.observability.sinks import Record, Sink
from llmgine.observability.spans import Span, current_span

__all__ = [
    "ConsolePrinter",
    "Envelope",
    "JsonlLog",
    "Metric",
    "MetricEvent",
    "Record",
    "Sink",
    "Span",
    "SpanContext",
    "TraceEvent",
    "current_span",
    "decode",
    "encode",
    "read_log",
]
