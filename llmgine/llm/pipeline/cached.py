"""The cache step: answers a request seen before, else asks ``inner`` and keeps the answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

from llmgine.llm.cache import LLMCache
from llmgine.llm.cache.acceptance import accepted
from llmgine.llm.providers.base import Provider, word_chunks
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.types import Completion, LLMRequest, StreamChunk

__all__ = ["Cached"]


class Cached(WrapperProvider):
    """Answers from ``cache`` when it can, else asks ``inner`` and keeps a completed answer.

    A hit is the stored answer with ``cached=True``, ``usage.cost_usd`` 0.0 and the
    original cost in ``cost_saved_usd``; streamed, it is replayed as word-sized deltas
    then the whole answer. Only an answer that completed is kept: a call that fails,
    is cancelled or times out leaves nothing behind, nor does a fallback model's answer
    (the key names the model asked, not the one that stood in), nor one the prompt does
    not accept (a structured answer that does not validate: see
    :mod:`~llmgine.llm.cache.acceptance`); a kept answer the prompt does not accept is
    asked for again and replaced. Identical concurrent requests make one call (see
    :class:`~llmgine.llm.cache.single_flight.SingleFlight`). A provider whose answer is
    not a function of the request (:attr:`Provider.cacheable` false: scripted, replay)
    is passed through: nothing looked up, nothing kept.

    Args:
        inner: The next step (pricing and the real provider below it).
        cache: Where answers are looked up and kept.
    """

    def __init__(self, inner: Provider, cache: LLMCache, *, salt: str | None = None) -> None:
        super().__init__(inner)
        self.cache = cache
        self.salt = salt
        self.bypass = not _cacheable(inner)
        """The real provider's answers are not a function of the request: no lookup, no store."""

    def key(self, request: LLMRequest) -> str:
        """The cache key of ``request`` as this step sends it (its provider and server)."""
        return self.cache.key(request, provider=self.name, endpoint=self.endpoint, salt=self.salt)

    async def _keep(self, key: str, request: LLMRequest, completion: Completion) -> None:
        if completion.fallback_from:
            return  # another model answered: not the answer of the model this key names
        if not accepted(completion):
            return  # the prompt refuses it (invalid structured output): the next run asks again
        model = completion.model or request.model
        await self.cache.keep(key, completion, provider=self.name, model=model)

    async def complete(self, request: LLMRequest) -> Completion:
        """The cached answer to ``request``, or the model's (then kept)."""
        if self.bypass:
            return await self.inner.complete(request)
        key = self.key(request)
        async with self.cache.serve(key, accepted) as hit:
            if hit is not None:
                return hit
            completion = await self.inner.complete(request)
            await self._keep(key, request, completion)
            return completion

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """The cached answer replayed as deltas, or the model's stream (its answer kept)."""
        if self.bypass:
            async for chunk in self.inner.stream(request):
                yield chunk
            return
        key = self.key(request)
        async with self.cache.serve(key, accepted) as hit:
            if hit is not None:
                for piece in word_chunks(hit.content or ""):
                    yield StreamChunk(delta=piece)
                yield StreamChunk(completion=hit)
                return
            async for chunk in self.inner.stream(request):
                if chunk.completion is not None:
                    await self._keep(key, request, chunk.completion)  # before the caller may stop
                yield chunk


def _cacheable(provider: Provider) -> bool:
    """Whether the real provider under the pipeline's steps answers as a function of the request."""
    while isinstance(provider, WrapperProvider):
        if not type(provider).cacheable:
            return False
        provider = provider.inner
    return provider.cacheable
