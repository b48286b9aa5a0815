"""The rate-limit step: a call waits for room under its model's limits, never fails for it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from llmgine.llm.limits import Limiter
from llmgine.llm.providers.base import Provider, count_tokens
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.types import Completion, LLMRequest, StreamChunk

__all__ = ["RateLimited", "answer_room", "estimated_tokens", "reserved_tokens"]


def estimated_tokens(request: LLMRequest) -> int:
    """The tokens a request will use, guessed before it is sent: its input's estimate."""
    return sum(count_tokens(m.content) for m in request.messages) + 4 * len(request.messages)


def reserved_tokens(request: LLMRequest, limiter: Limiter) -> int:
    """The tokens a call takes under ``tokens_per_minute`` before it is sent.

    Its input's estimate and room for its answer (see :func:`answer_room`). The
    server's count after the call gives back the rest.

    Raises:
        ConfigurationError: The input (and ``max_tokens``) are more than a minute holds.
    """
    return estimated_tokens(request) + answer_room(request, limiter)


def answer_room(request: LLMRequest, limiter: Limiter) -> int:
    """The tokens kept for a call's answer: ``max_tokens``, else the limits' ``output_tokens``.

    Without ``max_tokens``, input and answer room are never more than a minute holds,
    so a guess alone does not refuse a call. The room is taken as debt: the call does
    not wait for it, the next one does.

    Raises:
        ConfigurationError: The input (and ``max_tokens``) are more than a minute holds.
    """
    tokens = estimated_tokens(request)
    limiter.check(tokens, request.max_tokens)
    if request.max_tokens is not None:
        return request.max_tokens
    room = limiter.limits.output_tokens
    limit = limiter.limits.tokens_per_minute
    return room if limit is None else max(0, min(room, int(limit) - tokens))


class RateLimited(WrapperProvider):
    """Waits for room under ``limiter`` before each call of ``inner``.

    A wait for room (or for a free slot under ``concurrency``) past the request's
    ``timeout`` (the prompt's time left) is not waited: ``RateLimitWaitError``, so a
    fallback model can answer in time. After the waits, the call is given the time
    actually left (or the try's own timeout, if shorter).
    The answer says how long it waited (``Completion.rate_limit_wait_ms``), which the
    instrumentation puts on the span and the response event. The tokens taken
    before the call (:func:`reserved_tokens`: the input and room for the answer) are
    corrected by the server's count after it.

    Args:
        inner: The next step (the real provider, or the pricing step over it).
        limiter: The model's buckets.
    """

    def __init__(self, inner: Provider, limiter: Limiter) -> None:
        super().__init__(inner)
        self.limiter = limiter
        self.attempt_timeout: float | None = None
        """One try's own timeout (``Retries(attempt_timeout=...)``), set by the retry step
        above: it bounds the call after its wait for room, which only the prompt's
        time (the request's ``timeout``) bounds."""

    async def complete(self, request: LLMRequest) -> Completion:
        """Wait for room, then answer through ``inner``."""
        tokens, answer = estimated_tokens(request), answer_room(request, self.limiter)
        estimate = tokens + answer
        start = time.monotonic()
        async with self.limiter.slot(_left(request, start)):
            waited = await self.limiter.wait_for_room(tokens, _left(request, start), answer=answer)
            try:
                completion = await self.inner.complete(self._try(request, start))
            except BaseException:
                await self.limiter.give_back(estimate, request=False)  # sent: it counts
                raise
        await self.limiter.correct(estimate, completion.usage.total_tokens)
        return _annotated(completion, waited)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Wait for room, then stream through ``inner``."""
        tokens, answer = estimated_tokens(request), answer_room(request, self.limiter)
        estimate = tokens + answer
        start = time.monotonic()
        async with self.limiter.slot(_left(request, start)):
            waited = await self.limiter.wait_for_room(tokens, _left(request, start), answer=answer)
            counted = False
            try:
                async for chunk in self.inner.stream(self._try(request, start)):
                    if chunk.completion is not None:
                        counted = True
                        await self.limiter.correct(estimate, chunk.completion.usage.total_tokens)
                        chunk = StreamChunk(
                            delta=chunk.delta, completion=_annotated(chunk.completion, waited)
                        )
                    yield chunk
            except BaseException:
                if not counted:
                    await self.limiter.give_back(estimate, request=False)
                raise

    def _try(self, request: LLMRequest, start: float) -> LLMRequest:
        """The request sent after the waits: its timeout the time left, or the try's own."""
        left = _left(request, start)
        own = self.attempt_timeout
        if own is not None and (left is None or own < left):
            return request.model_copy(update={"timeout": own})
        if left is None:
            return request
        return request.model_copy(update={"timeout": max(left, 0.001)})


def _left(request: LLMRequest, start: float) -> float | None:
    """The prompt's time left (``None``: no timeout) once the call has its turn."""
    if request.timeout is None:
        return None
    return request.timeout - (time.monotonic() - start)


def _annotated(completion: Completion, waited: float) -> Completion:
    if not waited:
        return completion
    total = completion.rate_limit_wait_ms + waited * 1000.0
    return completion.model_copy(update={"rate_limit_wait_ms": total})
