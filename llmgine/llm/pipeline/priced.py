"""The pricing step: sets ``usage.cost_usd`` on each answer of the provider below it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from llmgine.llm.pricing import Prices
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.types import Completion, LLMRequest, StreamChunk

__all__ = ["Priced"]


class Priced(WrapperProvider):
    """Prices each answer of ``inner``: its ``usage.cost_usd`` in US dollars, or ``None``.

    It sits under the cache (a stored answer keeps the cost it had, which a hit
    reports as saved) and under a fallback (each model is priced as itself). The
    price comes from ``prices`` (see :mod:`llmgine.llm.pricing`), by the model the
    request named and the one the server says answered.

    Args:
        inner: The next step of the pipeline.
        prices: The engine's prices.
    """

    def __init__(self, inner: Provider, prices: Prices) -> None:
        super().__init__(inner)
        self.prices = prices

    def _priced(self, request: LLMRequest, completion: Completion) -> Completion:
        usage = completion.usage
        cost = self.prices.cost(
            self.name,
            request.model,
            usage,
            answered=completion.model,
            endpoint=self.endpoint,
        )
        if cost == usage.cost_usd:
            return completion
        usage = usage.model_copy(update={"cost_usd": cost})
        return completion.model_copy(update={"usage": usage})

    async def complete(self, request: LLMRequest) -> Completion:
        """Answer through the inner provider, priced."""
        return self._priced(request, await self.inner.complete(request))

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream through the inner provider; the final chunk's completion is priced."""
        async for chunk in self.inner.stream(request):
            if chunk.completion is not None:
                priced = self._priced(request, chunk.completion)
                chunk = StreamChunk(delta=chunk.delta, completion=priced)
            yield chunk
