"""Events the LLM engine publishes."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from pydantic import Field

from llmgine.llm.types import ToolCall, Usage
from llmgine.messages.events import Event

__all__ = [
    "ConversationTrimmedEvent",
    "LLMDeltaEvent",
    "LLMResponseEvent",
    "LLMRetryEvent",
    "ToolCallEvent",
    "ToolResultEvent",
]


class LLMResponseEvent(Event):
    """A provider answered one call (one round of a prompt)."""

    conversation_id: str
    prompt_id: UUID
    """The ``id`` of the ``PromptCommand`` this answers."""
    content: str | None
    model: str
    provider: str
    finish_reason: str | None
    usage: Usage = Field(default_factory=Usage)
    latency_ms: float
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_count: int = 0
    cost_usd: float | None = None
    """What the call cost in US dollars (``usage.cost_usd``); ``None``: price unknown."""
    cached: bool = False
    """Answered from the call cache (no request was sent)."""
    cost_saved_usd: float | None = None
    """On a cache hit: what the original call cost."""
    retries: int = 0
    """Tries that failed before this answer (each an ``LLMRetryEvent``)."""
    retry_wait_ms: float = 0.0
    """Time spent waiting between those tries."""
    rate_limit_wait_ms: float = 0.0
    """Time spent waiting for room under the model's rate limits (``RateLimits``)."""
    fallback_from: list[str] = Field(default_factory=list)
    """Models that failed before ``model`` answered, each ``"model: why"`` (``fallback=``)."""


class ToolCallEvent(Event):
    """The model asked for a tool; it is about to run."""

    conversation_id: str
    prompt_id: UUID
    call_id: str
    tool_name: str
    arguments: str
    """The arguments as the model wrote them (JSON)."""


class ToolResultEvent(Event):
    """A tool ran (or could not): its result or error goes back to the model."""

    conversation_id: str
    prompt_id: UUID
    call_id: str
    tool_name: str
    result: Any = None
    error: str | None = None
    duration_ms: float


class LLMDeltaEvent(Event):
    """A piece of streamed text, for UIs; not written to the log (the response carries it)."""

    log_to_file: ClassVar[bool] = False

    conversation_id: str
    prompt_id: UUID
    delta: str


class LLMRetryEvent(Event):
    """A provider call failed with an error worth another try; the engine waits, then retries."""

    conversation_id: str
    prompt_id: UUID
    model: str
    """The model whose call failed."""
    attempt: int
    """The try that failed (1 is the first)."""
    status: int | None
    """The server's HTTP status, if it answered (429, 503, ...)."""
    error: str
    """What failed, one line."""
    wait_s: float
    """Seconds waited before the next try (at least the server's ``Retry-After``)."""


class ConversationTrimmedEvent(Event):
    """Before a request, the oldest turns were left out of it to fit ``max_context_tokens``.

    Only the request is trimmed: the stored conversation keeps every message.
    """

    conversation_id: str
    prompt_id: UUID
    """The ``id`` of the ``PromptCommand`` whose request was trimmed."""
    dropped_messages: int
    """Messages left out (whole turns: a tool call always with its results)."""
    dropped_tokens: int
    """Their size in tokens (the provider's tokenizer, else llmgine's estimate)."""
    kept_messages: int
    """Messages sent, the system prompt and the current turn included."""
    context_tokens: int
    """The request's size in tokens after trimming."""
    max_context_tokens: int
