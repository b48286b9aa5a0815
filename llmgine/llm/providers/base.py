"""The one small interface every provider implements: complete and stream."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar

from llmgine.llm.types import Completion, LLMRequest, StreamChunk, Usage

__all__ = ["Capabilities", "Provider", "count_tokens", "estimate_usage", "word_chunks"]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\s*\S+\s*|\s+")


def count_tokens(text: str | None) -> int:
    """Count tokens simply: words and punctuation marks (for providers that report none)."""
    return len(_TOKEN.findall(text or ""))


def estimate_usage(request: LLMRequest, completion: Completion) -> Usage:
    """Estimate the token counts of one call, for servers that report none (marked estimated).

    Counts words and punctuation marks of every message, tool call and the answer,
    plus a few tokens per message for the chat template.
    """
    input_tokens = sum(
        4 + count_tokens(m.content) + sum(count_tokens(c.arguments) + 1 for c in m.tool_calls)
        for m in request.messages
    )
    output_tokens = count_tokens(completion.content) + sum(
        count_tokens(c.arguments) + 1 for c in completion.tool_calls
    )
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens, estimated=True)


def word_chunks(text: str) -> list[str]:
    """Split ``text`` into word-sized pieces that join back to exactly ``text``."""
    return _WORD.findall(text)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider's server does by itself; the engine adapts requests to it.

    A provider only reports; the engine decides (e.g. to ask for JSON in the prompt
    when there is no JSON-schema mode).
    """

    json_schema: bool = False
    """The server enforces ``LLMRequest.output_schema`` (a JSON-schema mode or a grammar)."""
    stream_usage: bool = False
    """A streamed answer's final chunk carries the server's token counts."""


class Provider(ABC):
    """Translates an :class:`LLMRequest` into one provider's API and back.

    The engine owns conversations, tools and the loop; a provider only answers
    one request. ``stream`` defaults to the completion cut into words.

    Args:
        model: The model requests use unless they name another.
    """

    name: ClassVar[str]
    """The provider's name, used as ``gen_ai.provider.name``."""
    cacheable: ClassVar[bool] = True
    """Whether an answer is a function of the request, so the call cache may keep and reuse it.

    ``False`` for providers that answer from a script or a recording (``scripted``,
    ``replay``): their next answer depends on what was asked before, not on the
    request, so the cache neither looks their calls up nor keeps their answers.
    """

    def __init__(self, model: str) -> None:
        self.model = model

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

    @property
    def capabilities(self) -> Capabilities:
        """What the server supports; it may change once a server turns out to lack a mode.

        Built-in providers override this. The default honours an override of
        :attr:`native_structured_output` (the older form), else reports nothing.
        """
        if type(self).native_structured_output is not Provider.native_structured_output:
            return Capabilities(json_schema=self.native_structured_output)
        return Capabilities()

    @property
    def native_structured_output(self) -> bool:
        """Whether the provider enforces ``LLMRequest.output_schema`` itself (older form).

        Prefer :attr:`capabilities`; this reads ``capabilities.json_schema``.
        """
        return self.capabilities.json_schema

    @property
    def model_string(self) -> str:
        """The model string that builds this provider again, e.g. ``"openai:gpt-4o-mini"``."""
        return f"{self.name}:{self.model}"

    @property
    def endpoint(self) -> str | None:
        """The server this provider calls (``host:port``, never credentials); ``None`` in-process.

        Part of the call cache's key: one model name on two servers is two models.
        """
        return None

    async def aclose(self) -> None:
        """Release what the provider holds open (connections); the default holds nothing."""
        return None

    @abstractmethod
    async def complete(self, request: LLMRequest) -> Completion:
        """Answer ``request`` in one piece."""

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Answer ``request`` as text deltas, then one chunk carrying the whole completion."""
        completion = await self.complete(request)
        for piece in word_chunks(completion.content or ""):
            yield StreamChunk(delta=piece)
        yield StreamChunk(completion=completion)
