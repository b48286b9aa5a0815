"""Structured output: the one place a JSON-schema mode falls back to JSON asked in the prompt."""

from __future__ import annotations

from collections.abc import AsyncIterator

from llmgine.errors import ProviderError
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.structured import with_json_instruction
from llmgine.llm.types import Completion, LLMRequest, StreamChunk

__all__ = ["PromptedJSON", "prompted"]


def prompted(request: LLMRequest) -> LLMRequest:
    """``request`` with a system instruction to answer in JSON matching its ``output_schema``."""
    if request.output_schema is None:
        return request
    messages = with_json_instruction(request.messages, request.output_schema)
    return request.model_copy(update={"messages": messages})


class PromptedJSON(WrapperProvider):
    """Asks for JSON in the prompt when the inner provider has no JSON-schema mode.

    The inner provider reports ``capabilities.json_schema``. When it has none, a
    request with an ``output_schema`` gets the schema as a system instruction. When
    a call fails and the provider has meanwhile found that its server lacks the
    mode (its capabilities no longer say ``json_schema``), the call is sent again,
    prompted; the provider keeps that answer for later calls.
    """

    async def complete(self, request: LLMRequest) -> Completion:
        """Answer, in the prompt's JSON when the server has no JSON-schema mode."""
        if request.output_schema is None:
            return await self.inner.complete(request)
        if not self.inner.capabilities.json_schema:
            return await self.inner.complete(prompted(request))
        try:
            return await self.inner.complete(request)
        except ProviderError:
            if self.inner.capabilities.json_schema:
                raise
        return await self.inner.complete(prompted(request))

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream, in the prompt's JSON when the server has no JSON-schema mode."""
        if request.output_schema is not None and not self.inner.capabilities.json_schema:
            request = prompted(request)
        elif request.output_schema is not None:
            started = False
            try:
                async for chunk in self.inner.stream(request):
                    started = True
                    yield chunk
                return
            except ProviderError:
                if started or self.inner.capabilities.json_schema:
                    raise
            request = prompted(request)
        async for chunk in self.inner.stream(request):
            yield chunk
