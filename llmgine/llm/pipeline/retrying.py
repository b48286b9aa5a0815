"""The retry step: a failed call worth another try is tried again after a wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from uuid import UUID

from llmgine.errors import ProviderError
from llmgine.llm.events import LLMRetryEvent
from llmgine.llm.honoured_wait import honoured
from llmgine.llm.pipeline.limited import RateLimited
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.retries import Retries, is_retryable
from llmgine.llm.types import Completion, LLMRequest, StreamChunk

__all__ = ["Retrying", "retried"]

Publish = Callable[[LLMRetryEvent], Awaitable[None]]


class Retrying(WrapperProvider):
    """Tries ``inner`` again on 429, 5xx, timeouts and connection errors.

    Each failed try is an ``LLMRetryEvent``; the answer carries how many tries
    failed and how long was waited (``Completion.retries``/``retry_wait_ms``), which
    the instrumentation puts on the LLM span and the response event. A wait that
    would outlast the request's ``timeout`` (the prompt's time left) is not waited:
    the error is raised at once, so a fallback model can answer in time. A streamed
    call is retried only while nothing of the answer has been passed on. The error
    raised after the last try says how many tries were made and what to do; a
    ``Retry-After`` no client would honour (``inf``, days) is taken as not given.

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
        fallback: bool = False,
    ) -> None:
        super().__init__(inner)
        self.policy = policy
        self.publish = publish
        self.conversation_id = conversation_id
        self.prompt_id = prompt_id
        self.fallback = fallback
        """Whether other models follow this one (then an error does not advise fallback=)."""
        self._own_timeout = policy.attempt_timeout
        if isinstance(inner, RateLimited):
            # A try's own timeout is for the call, not the wait for room before it (the
            # prompt's time bounds that): the rate-limit step applies it after its wait.
            inner.attempt_timeout, self._own_timeout = self._own_timeout, None

    async def complete(self, request: LLMRequest) -> Completion:
        """Answer through ``inner``, retrying what is worth it."""
        start = time.monotonic()
        attempt, waited = 1, 0.0
        while True:
            try:
                completion = await self.inner.complete(self._try(request, start))
            except Exception as error:
                waited += await self._before_retry(request, start, attempt, waited, error)
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
                waited += await self._before_retry(request, start, attempt, waited, error)
                attempt += 1

    def _try(self, request: LLMRequest, start: float) -> LLMRequest:
        """The request of one try: its timeout the prompt's time left, or the try's own."""
        request = _left(request, start)
        own = self._own_timeout
        if own is not None and (request.timeout is None or own < request.timeout):
            request = request.model_copy(update={"timeout": own})
        return request

    async def _before_retry(
        self, request: LLMRequest, start: float, attempt: int, waited: float, error: Exception
    ) -> float:
        """Wait before the next try and return the seconds waited; raise ``error`` if no retry.

        The error raised after retries says how many tries were made and what to do,
        and carries the retries made (see :func:`retried`) for a fallback's answer.
        """
        if not is_retryable(error):
            raise _tried(error, attempt, waited)
        if attempt >= self.policy.attempts:
            raise _tried(error, attempt, waited, self._exhausted(attempt))
        if isinstance(error, ProviderError) and honoured(error.retry_after) is None:
            error.retry_after = None  # none, or a wait no client makes (inf): the backoff
        wait = self.policy.wait(attempt, error)
        if request.timeout is not None and time.monotonic() - start + wait >= request.timeout:
            # The prompt would be out of time before the next try began.
            note = (
                f"Not retried after trying {_times(attempt)}: the next wait ({wait:.3g} s) would "
                "outlast the prompt's timeout. Allow more time with timeout=... on the "
                "prompt or the LLMEngine"
                + ("." if self.fallback else ", or give fallback=[...] models to try instead.")
            )
            raise _tried(error, attempt, waited, note)
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

    def _exhausted(self, attempt: int) -> str:
        advice = "allow more with LLMEngine(retries=Retries(attempts=...))"
        if not self.fallback:
            advice += ", or give fallback=[...] models to try when this one fails"
        policy = f"Retries(attempts={self.policy.attempts}) on the LLMEngine"
        return f"Tried {_times(attempt)} ({policy}): {advice}."


_RETRIED = "_llmgine_retried"
"""The attribute of a raised error holding the retries made before it and the seconds waited."""


def retried(error: BaseException) -> tuple[int, float]:
    """The retries a :class:`Retrying` step made before raising ``error``, and the ms waited.

    ``(0, 0.0)`` for an error no retry step raised. A fallback's answer counts its
    primary's retries with these.
    """
    value = getattr(error, _RETRIED, None)
    if not isinstance(value, tuple):
        return 0, 0.0
    retries, waited = value
    return int(retries), float(waited) * 1000.0


def _times(attempt: int) -> str:
    return "once" if attempt == 1 else f"{attempt} times"


def _tried(error: Exception, attempt: int, waited: float, note: str = "") -> Exception:
    """``error`` noting the retries made before it (and ``note``, what to do, in its message)."""
    setattr(error, _RETRIED, (attempt - 1, waited))
    if note and len(error.args) == 1 and isinstance(error.args[0], str):
        message = error.args[0].rstrip()
        if message and not message.endswith((".", "!", "?")):
            message += "."
        error.args = (f"{message} {note}" if message else note,)
    return error


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
