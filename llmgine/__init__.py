"""llmgine: event-driven LLM applications, made for Jupyter.

The public surface is re-exported here; ``import llmgine`` stays light (no pandas,
openai, IPython or ipywidgets until a feature that needs them is used).
"""

from __future__ import annotations

from typing import Any

from llmgine.bus import BusSession, BusStats, MessageBus, Registration, current_session_id
from llmgine.errors import (
    BusStateError,
    CommandFailedError,
    ConfigurationError,
    HandlerAlreadyRegisteredError,
    HandlerNotFoundError,
    LLMgineError,
    MissingAPIKeyError,
    ProviderAuthenticationError,
    ProviderConnectionError,
    ProviderError,
    ProviderExhaustedError,
    ProviderRateLimitError,
    ToolError,
)
from llmgine.llm import (
    ApproveToolCallCommand,
    ChatMessage,
    ClearConversationCommand,
    Completion,
    Conversation,
    ConversationStore,
    LLMDeltaEvent,
    LLMEngine,
    LLMRequest,
    LLMResponseEvent,
    OfflineProvider,
    OpenAIProvider,
    PromptCommand,
    Provider,
    ReplayProvider,
    ScriptedProvider,
    SetSystemPromptCommand,
    StreamChunk,
    Tool,
    ToolApprovalDecidedEvent,
    ToolApprovalRequestedEvent,
    ToolApprovals,
    ToolCall,
    ToolCallEvent,
    ToolRegistry,
    ToolResultEvent,
    Usage,
    default_model,
    provider_for,
    tool,
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


def load_ipython_extension(ipython: Any) -> None:
    """Register the ``%llmgine`` magics: what ``%load_ext llmgine`` calls (imports lazily)."""
    from llmgine.notebook.magics import load_ipython_extension as load

    load(ipython)


__all__ = [
    "ApproveToolCallCommand",
    "BusSession",
    "BusStateError",
    "BusStats",
    "ChatMessage",
    "ClearConversationCommand",
    "Command",
    "CommandErrorEvent",
    "CommandFailedError",
    "CommandResult",
    "CommandResultEvent",
    "Completion",
    "ConfigurationError",
    "ConsolePrinter",
    "Conversation",
    "ConversationStore",
    "Event",
    "EventHandlerFailedEvent",
    "HandlerAlreadyRegisteredError",
    "HandlerNotFoundError",
    "JsonlLog",
    "LLMDeltaEvent",
    "LLMEngine",
    "LLMRequest",
    "LLMResponseEvent",
    "LLMgineError",
    "Message",
    "MessageBus",
    "Metric",
    "MetricEvent",
    "MissingAPIKeyError",
    "OfflineProvider",
    "OpenAIProvider",
    "PromptCommand",
    "Provider",
    "ProviderAuthenticationError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderExhaustedError",
    "ProviderRateLimitError",
    "Registration",
    "ReplayProvider",
    "ScriptedProvider",
    "SetSystemPromptCommand",
    "Span",
    "SpanContext",
    "StreamChunk",
    "Tool",
    "ToolApprovalDecidedEvent",
    "ToolApprovalRequestedEvent",
    "ToolApprovals",
    "ToolCall",
    "ToolCallEvent",
    "ToolError",
    "ToolRegistry",
    "ToolResultEvent",
    "TraceEvent",
    "Usage",
    "__version__",
    "current_session_id",
    "current_span",
    "default_model",
    "load_ipython_extension",
    "provider_for",
    "tool",
]
