"""The retry step: a failed call worth another try is tried again after a wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from uuid import UUID

from llmgine.errors import ProviderError
from llmgine.llm.events import LLMRetryEvent
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.retries import Retries, is_retryable
from llmgine.llm.types import Completion, LLMRequest, StreamChunk

__all__ = ["Retrying"]

Publish = Callable[[LLMRetryEvent], Awaitable[None]]


class Retrying(WrapperProvider):
    """Tries ``inner`` again on 429, 5xx, timeouts and connection errors.

    Each failed try is an ``LLMRetryEvent``; the answer carries how many tries
    failed and how long was waited (``Completion.retries``/``retry_wait_ms``), which
    the instrumentation puts on the LLM span and the response event. A wait that
    would outlast the request's ``timeout`` (the prompt's time left) is not waited:
    the error is raised at once, so a fallback model can answer in time. A streamed
    call is retried only while nothing of the answer has been passed on.

    Args:
        inner: The next step.
        policy: How many tries and how long to wait.
        publish: Where the retry events go (the bus's ``publish``).
        conversation_id: The conversation of the prompt, for the events.
        prompt_id: The prompt's id, for the events.
    """

    def __init__(
        self,
        inner: Provider,
        policy: Retries,
        *,
        publish: Publish,
        conversation_id: str,
        prompt_id: UUID,
    ) -> None:
        super().__init__(inner)
        self.policy = policy
        self.publish = publish
        self.conversation_id = conversation_id
        self.prompt_id = prompt_id

    async def complete(self, request: LLMRequest) -> Completion:
        """Answer through ``inner``, retrying what is worth it."""
        start = time.monotonic()
        attempt, waited = 1, 0.0
        while True:
            try:
                completion = await self.inner.complete(self._try(request, start))
            except Exception as error:
                waited += await self._before_retry(request, start, attempt, error)
                attempt += 1
                continue
            return _annotated(completion, attempt - 1, waited)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream through ``inner``; retried only before the first piece of the answer."""
        start = time.monotonic()
        attempt, waited = 1, 0.0
        while True:
            started = False
            try:
                async for chunk in self.inner.stream(self._try(request, start)):
                    if chunk.completion is not None:
                        chunk = StreamChunk(
                            delta=chunk.delta,
                            completion=_annotated(chunk.completion, attempt - 1, waited),
                        )
                    started = started or bool(chunk.delta)
                    yield chunk
                return
            except Exception as error:
                if started:
                    raise
                waited += await self._before_retry(request, start, attempt, error)
                attempt += 1

    def _try(self, request: LLMRequest, start: float) -> LLMRequest:
        """The request of one try: its timeout the prompt's time left, or the try's own."""
        request = _left(request, start)
        own = self.policy.attempt_timeout
        if own is not None and (request.timeout is None or own < request.timeout):
            request = request.model_copy(update={"timeout": own})
        return request

    async def _before_retry(
        self, request: LLMRequest, start: float, attempt: int, error: Exception
    ) -> float:
        """Wait before the next try and return the seconds waited; raise ``error`` if no retry."""
        if attempt >= self.policy.attempts or not is_retryable(error):
            raise error
        wait = self.policy.wait(attempt, error)
        if request.timeout is not None and time.monotonic() - start + wait >= request.timeout:
            raise error  # the prompt would be out of time before the next try began
        status = error.status if isinstance(error, ProviderError) else None
        await self.publish(
            LLMRetryEvent(
                conversation_id=self.conversation_id,
                prompt_id=self.prompt_id,
                model=self.model,
                attempt=attempt,
                status=status,
                error=" ".join(str(error).split())[:300] or type(error).__name__,
                wait_s=wait,
            )
        )
        await asyncio.sleep(wait)
        return wait


def _left(request: LLMRequest, start: float) -> LLMRequest:
    """The request with the time the prompt has left as its timeout."""
    if request.timeout is None:
        return request
    left = max(request.timeout - (time.monotonic() - start), 0.001)
    return request.model_copy(update={"timeout": left})


def _annotated(completion: Completion, retries: int, waited: float) -> Completion:
    if not retries:
        return completion
    return completion.model_copy(update={"retries": retries, "retry_wait_ms": waited * 1000.0})
