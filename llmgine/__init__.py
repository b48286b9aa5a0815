"""llmgine: event-driven LLM applications, made for Jupyter.

The public surface is re-exported here; ``import llmgine`` stays light (no pandas,
openai, IPython or ipywidgets until a feature that needs them is used).
"""

from __future__ import annotations

from llmgine.bus import BusSession, BusStats, MessageBus, Registration, current_session_id
from llmgine.errors import (
    BusStateError,
    HandlerAlreadyRegisteredError,
    HandlerNotFoundError,
    LLMgineError,
)
from llmgine.messages import (
    Command,
    CommandErrorEvent,
    CommandResult,
    CommandResultEvent,
    Event,
    EventHandlerFailedEvent,
    Message,
)
from llmgine.observability import (
    ConsolePrinter,
    JsonlLog,
    Metric,
    MetricEvent,
    Span,
    SpanContext,
    TraceEvent,
    current_span,
)

__version__ = "0.1.0"

__all__ = [
    "BusSession",
    "BusStateError",
    "BusStats",
    "Command",
    "CommandErrorEvent",
    "CommandResult",
    "CommandResultEvent",
    "ConsolePrinter",
    "Event",
    "EventHandlerFailedEvent",
    "HandlerAlreadyRegisteredError",
    "HandlerNotFoundError",
    "JsonlLog",
    "LLMgineError",
    "Message",
    "MessageBus",
    "Metric",
    "MetricEvent",
    "Registration",
    "Span",
    "SpanContext",
    "TraceEvent",
    "__version__",
    "current_session_id",
    "current_span",
]
