"""The fallback step: when a model fails (after its retries), the next one answers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from llmgine.errors import ProviderError
from llmgine.llm.pipeline.retrying import retried
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.types import Completion, LLMRequest, StreamChunk

__all__ = ["Fallback"]


class Fallback(WrapperProvider):
    """Asks ``inner`` (the primary model's chain), then each of ``others`` in turn.

    A model is left for the next on a provider's error (what its retries could not
    mend, a 429 asking for a wait past the prompt's time, or the engine's own
    ``RateLimits`` having room only past it: ``RateLimitWaitError``); anything else (a
    bug, a cancellation) is raised at once. The answer names the model that gave
    it (``Completion.model``) and why the ones before it did not
    (``Completion.fallback_from``: ``"model: error"`` lines), its ``retries`` and
    ``retry_wait_ms`` counting every model's retries. When every model
    fails, the last error is raised, with the others' in its message. A streamed
    call falls back only before the first piece of its answer. Each model is given
    the prompt's time left (the request's ``timeout`` less what the models before it
    took), so its waits for room are checked against that.

    Args:
        inner: The primary model's chain.
        others: The fallback models' chains, in order.
    """

    def __init__(self, inner: Provider, others: Sequence[Provider]) -> None:
        super().__init__(inner)
        self.others = list(others)

    async def aclose(self) -> None:
        """Close every model's chain."""
        for chain in (self.inner, *self.others):
            await chain.aclose()

    async def complete(self, request: LLMRequest) -> Completion:
        """Answer through the first model that can."""
        failures = _Failures()
        chains = [self.inner, *self.others]
        start = time.monotonic()
        for n, chain in enumerate(chains):
            try:
                completion = await chain.complete(_for(chain, request, start))
            except ProviderError as error:
                failures.add(chain, error)
                if n == len(chains) - 1:
                    raise _all_failed(error, failures.lines) from error
                continue
            return failures.annotated(completion, chain)
        raise AssertionError("unreachable: the last model's error is raised")  # pragma: no cover

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream from the first model that can; no fallback once the answer has begun."""
        failures = _Failures()
        chains = [self.inner, *self.others]
        start = time.monotonic()
        for n, chain in enumerate(chains):
            started = False
            try:
                async for chunk in chain.stream(_for(chain, request, start)):
                    if chunk.completion is not None:
                        chunk = StreamChunk(
                            delta=chunk.delta,
                            completion=failures.annotated(chunk.completion, chain),
                        )
                    started = started or bool(chunk.delta)
                    yield chunk
                return
            except ProviderError as error:
                if started:
                    raise
                failures.add(chain, error)
                if n == len(chains) - 1:
                    raise _all_failed(error, failures.lines) from error


def _for(chain: Provider, request: LLMRequest, start: float) -> LLMRequest:
    """The request for ``chain``: its model, and the prompt's time left as its timeout."""
    update: dict[str, object] = {}
    if request.model != chain.model:
        update["model"] = chain.model
    if request.timeout is not None:
        update["timeout"] = max(request.timeout - (time.monotonic() - start), 0.001)
    return request.model_copy(update=update) if update else request


def _line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__


class _Failures:
    """The models that failed so far: why (``"model: error"`` lines), and their retries."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.retries = 0
        self.retry_wait_ms = 0.0

    def add(self, chain: Provider, error: ProviderError) -> None:
        self.lines.append(f"{chain.model_string}: {_line(error)}")
        retries, waited_ms = retried(error)
        self.retries += retries
        self.retry_wait_ms += waited_ms

    def annotated(self, completion: Completion, chain: Provider) -> Completion:
        """The answer of ``chain`` saying which models failed before it, and their retries."""
        if not self.lines:
            return completion
        return completion.model_copy(
            update={
                "model": completion.model or chain.model,
                "fallback_from": list(self.lines),
                "retries": completion.retries + self.retries,
                "retry_wait_ms": completion.retry_wait_ms + self.retry_wait_ms,
            }
        )


def _all_failed(last: ProviderError, failures: list[str]) -> ProviderError:
    """The last model's error, of its own type, saying what every model answered."""
    if len(failures) == 1:
        return last
    message = f"Every model failed: {'; '.join(line.rstrip('.') for line in failures)}."
    try:
        error = type(last)(message, status=last.status, retry_after=last.retry_after)
    except TypeError:  # a subclass with another signature: keep its own error
        return last
    return error
