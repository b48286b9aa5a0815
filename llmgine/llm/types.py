"""Provider-neutral chat types: what the engine sends to a provider and gets back."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ChatMessage", "Completion", "LLMRequest", "StreamChunk", "ToolCall", "Usage"]


class ToolCall(BaseModel):
    """The model asks for one tool to be run."""

    model_config = ConfigDict(extra="forbid")

    id: str
    """The provider's id of the call; the tool result answers to it."""
    name: str
    """The tool's name."""
    arguments: str = "{}"
    """The arguments as the model wrote them: a JSON object, not yet validated."""


class ChatMessage(BaseModel):
    """One message of a conversation, in the shape of Chat Completions."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    """On an assistant message: the tools it asked for."""
    tool_call_id: str | None = None
    """On a tool message: the call it answers."""
    name: str | None = None
    """On a tool message: the tool's name."""


class Usage(BaseModel):
    """Token counts of one provider call."""

    model_config = ConfigDict(extra="forbid")

    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    """The server reported no counts; these are llmgine's estimate (a recorded 0 means 0)."""
    cached_input_tokens: int = 0
    """Of the input tokens, those the server read from its prompt cache (priced as such)."""
    cost_usd: float | None = None
    """What the call cost in US dollars; ``None`` when its price is unknown (never a silent 0)."""

    @property
    def total_tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens


class Completion(BaseModel):
    """One provider call's answer: text, tool calls, or both."""

    model_config = ConfigDict(extra="forbid")

    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    """Why the model stopped: ``"stop"``, ``"tool_calls"``, ``"length"``, ..."""
    usage: Usage = Field(default_factory=Usage)
    model: str | None = None
    """The model that answered, as the provider names it."""
    cached: bool = False
    """Answered from llmgine's call cache, not by the model (``usage.cost_usd`` is then 0)."""
    cost_saved_usd: float | None = None
    """On a cache hit: what the original call cost, saved this time."""
    retries: int = 0
    """Tries of this call that failed (and were retried) before this answer."""
    retry_wait_ms: float = 0.0
    """Milliseconds waited between those tries."""
    rate_limit_wait_ms: float = 0.0
    """Milliseconds waited for room under the model's rate limits."""
    fallback_from: list[str] = Field(default_factory=list)
    """Models that failed before the one that answered: ``"model: why"``, in order."""


class LLMRequest(BaseModel):
    """What the engine asks a provider for."""

    model_config = ConfigDict(extra="forbid")

    model: str
    messages: list[ChatMessage]
    tools: list[dict[str, Any]] = Field(default_factory=list)
    """Tool definitions in the Chat Completions ``tools`` shape."""
    temperature: float | None = None
    max_tokens: int | None = None
    tool_choice: str | None = None
    """``"auto"``, ``"none"``, ``"required"`` or a tool's name; ``None``: the provider's default."""
    timeout: float | None = None
    """Seconds this call may take; ``None`` leaves it to the provider."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Further request parameters passed to the provider as they are (``seed``, ``stop``, ...)."""
    output_schema: dict[str, Any] | None = None
    """A JSON schema the answer must match (structured output), with ``title`` as its name."""


class StreamChunk(BaseModel):
    """One piece of a streamed answer: a text delta, or (last) the whole completion."""

    model_config = ConfigDict(extra="forbid")

    delta: str = ""
    completion: Completion | None = None
    """Set on the final chunk only: the assembled answer with usage."""
