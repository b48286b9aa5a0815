"""Fallback models: when one fails after its retries, the next answers and the answer says so."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from llmgine.errors import ProviderError, ProviderRateLimitError
from llmgine.llm.pipeline.fallback import Fallback
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import ChatMessage, Completion, LLMRequest, StreamChunk


class Model(Provider):
    """Answers with its own name, or fails with ``error``; notes the model each request named."""

    name = "fake"

    def __init__(self, model: str, error: Exception | None = None) -> None:
        super().__init__(model)
        self.error = error
        self.asked: list[str] = []

    async def complete(self, request: LLMRequest) -> Completion:
        self.asked.append(request.model)
        if self.error is not None:
            raise self.error
        return Completion(content=f"from {self.model}", model=self.model)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        completion = await self.complete(request)
        yield StreamChunk(delta=completion.content or "")
        yield StreamChunk(completion=completion)


def request() -> LLMRequest:
    return LLMRequest(model="primary", messages=[ChatMessage(role="user", content="hi")])


async def test_the_next_model_answers_when_the_first_fails_and_the_answer_says_why() -> None:
    primary = Model("primary", ProviderRateLimitError("429 slow down", status=429))
    backup = Model("backup")
    completion = await Fallback(primary, [backup]).complete(request())
    assert completion.content == "from backup"
    assert completion.model == "backup"
    assert completion.fallback_from == ["fake:primary: 429 slow down"]
    assert backup.asked == ["backup"]  # the request names the model that is asked


async def test_a_model_that_answers_leaves_the_others_alone() -> None:
    backup = Model("backup")
    completion = await Fallback(Model("primary"), [backup]).complete(request())
    assert completion.content == "from primary"
    assert completion.fallback_from == []
    assert backup.asked == []


async def test_when_every_model_fails_the_error_names_each() -> None:
    chain = Fallback(
        Model("primary", ProviderError("503 down", status=503)),
        [Model("second", ProviderError("502 bad gateway", status=502))],
    )
    with pytest.raises(ProviderError) as caught:
        await chain.complete(request())
    assert "fake:primary: 503 down" in str(caught.value)
    assert "fake:second: 502 bad gateway" in str(caught.value)
    assert caught.value.status == 502


async def test_a_bug_is_not_hidden_by_a_fallback() -> None:
    backup = Model("backup")
    chain = Fallback(Model("primary", KeyError("a bug")), [backup])
    with pytest.raises(KeyError):
        await chain.complete(request())
    assert backup.asked == []


async def test_a_stream_falls_back_before_its_answer_begins() -> None:
    chain = Fallback(Model("primary", ProviderError("down", status=500)), [Model("backup")])
    chunks = [chunk async for chunk in chain.stream(request())]
    assert "".join(c.delta for c in chunks) == "from backup"
    final = chunks[-1].completion
    assert final is not None and final.fallback_from == ["fake:primary: down"]


class Clock:
    """A fake ``time`` module for the fallback step: ``monotonic`` moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


class Slow(Model):
    """Fails after taking ``took`` seconds of ``clock``; notes the timeout each request gave it."""

    def __init__(self, model: str, clock: Clock, took: float, error: Exception | None) -> None:
        super().__init__(model, error)
        self.clock, self.took = clock, took
        self.timeouts: list[float | None] = []

    async def complete(self, request: LLMRequest) -> Completion:
        self.timeouts.append(request.timeout)
        self.clock.now += self.took
        return await super().complete(request)


@pytest.mark.parametrize("streamed", [False, True])
async def test_each_fallback_model_is_given_only_the_prompts_time_left(
    monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    clock = Clock()
    monkeypatch.setattr("llmgine.llm.pipeline.fallback.time", clock)
    first = Slow("primary", clock, 4.0, ProviderError("down", status=500))
    second = Slow("second", clock, 5.0, ProviderError("down", status=500))
    last = Slow("last", clock, 0.0, None)
    asked = request().model_copy(update={"timeout": 30.0})
    step = Fallback(first, [second, last])
    if streamed:
        chunks = [chunk async for chunk in step.stream(asked)]
        answer = chunks[-1].completion
    else:
        answer = await step.complete(asked)
    assert answer is not None and answer.content == "from last"
    assert (first.timeouts, second.timeouts, last.timeouts) == ([30.0], [26.0], [21.0])
