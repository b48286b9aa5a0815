"""Rate limits per model: calls wait for room (never fail for it), and say how long they waited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from llmgine.bus import MessageBus
from llmgine.errors import ConfigurationError, RateLimitWaitError
from llmgine.llm.limits import Limiter, RateLimits, limits_for
from llmgine.llm.pipeline.limited import (
    RateLimited,
    answer_room,
    estimated_tokens,
    reserved_tokens,
)
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import ChatMessage, Completion, LLMRequest, StreamChunk, Usage


class Counting(Provider):
    """Answers after ``hold`` (an event, if given); notes when each call began and how many ran."""

    name = "counting"

    def __init__(self, *, tokens: int = 10, hold: asyncio.Event | None = None) -> None:
        super().__init__("counting-1")
        self.starts: list[float] = []
        self.running = 0
        self.most_at_once = 0
        self.tokens = tokens
        self.hold = hold

    async def complete(self, request: LLMRequest) -> Completion:
        self.starts.append(time.monotonic())
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            if self.hold is not None:
                await self.hold.wait()
            return Completion(content="ok", usage=Usage(input_tokens=self.tokens))
        finally:
            self.running -= 1

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        completion = await self.complete(request)
        yield StreamChunk(delta="ok")
        yield StreamChunk(completion=completion)


def request() -> LLMRequest:
    return LLMRequest(model="counting-1", messages=[ChatMessage(role="user", content="hi there")])


def test_rate_limits_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="needs a limit"):
        RateLimits()
    with pytest.raises(ConfigurationError, match="requests_per_minute"):
        RateLimits(requests_per_minute=0)
    with pytest.raises(ConfigurationError, match="concurrency"):
        RateLimits(concurrency=-1)


def test_limits_are_found_by_model_string_or_model_name() -> None:
    one = RateLimits(requests_per_minute=60)
    other = RateLimits(requests_per_minute=10)
    assert limits_for(one, "openai:gpt-4o", "gpt-4o") is one
    by_model = {"openai:gpt-4o": one, "gpt-4o-mini": other}
    assert limits_for(by_model, "openai:gpt-4o", "gpt-4o") is one
    assert limits_for(by_model, "openai:gpt-4o-mini", "gpt-4o-mini") is other
    assert limits_for(by_model, "offline:offline", "offline") is None
    assert limits_for(None, "offline:offline", "offline") is None


@pytest.mark.timeout(30)
async def test_requests_past_the_burst_wait_for_the_rate_and_never_start_early() -> None:
    per_second = 20.0
    limits = RateLimits(requests_per_minute=per_second * 60, burst_seconds=0.25)
    inner = Counting()
    step = RateLimited(inner, Limiter(limits, "counting:counting-1", MessageBus()))
    first = time.monotonic()
    answers = await asyncio.gather(*(step.complete(request()) for _ in range(15)))
    burst = int(limits.capacity(limits.requests_per_minute or 0))
    assert burst == 5
    starts = sorted(inner.starts)
    for n, started in enumerate(starts):
        earliest = first + max(0, n + 1 - burst) / per_second
        assert started >= earliest - 0.01, f"call {n} began {earliest - started:.3f} s early"
    assert all(a.content == "ok" for a in answers)
    assert [a.rate_limit_wait_ms > 0 for a in answers].count(True) == 15 - burst
    assert max(a.rate_limit_wait_ms for a in answers) >= (15 - burst) / per_second * 1000 * 0.9


@pytest.mark.timeout(30)
async def test_token_limits_count_the_servers_tokens_after_the_call() -> None:
    # 6,000 tokens a minute: 100 a second, a burst of 100. Each call really uses 300 tokens,
    # far more than its estimate (no room kept for the answer), so after the first the
    # bucket is 200 short.
    limits = RateLimits(tokens_per_minute=6000, output_tokens=0)
    inner = Counting(tokens=300)
    limiter = Limiter(limits, "counting:counting-1", MessageBus())
    step = RateLimited(inner, limiter)
    first = await step.complete(request())
    second = await step.complete(request())
    assert first.rate_limit_wait_ms == 0
    estimate = estimated_tokens(request())
    assert estimate < 100
    # 200 short, and the second call takes its estimate on top: about 2 s at 100 a second.
    assert second.rate_limit_wait_ms >= 1500


async def test_a_token_limit_reserves_room_for_the_answer_before_the_call() -> None:
    # 60,000 a minute: a burst of 1,000. Each call's answer may be 400 tokens (max_tokens),
    # taken as debt after the call's own wait: three go at once (the third takes the
    # bucket below zero), the fourth waits for their answers' room, however small its input.
    limiter = Limiter(RateLimits(tokens_per_minute=60_000), "c", MessageBus())
    step = RateLimited(Counting(tokens=0), limiter)
    asked = request().model_copy(update={"max_tokens": 400})
    tokens, answer = estimated_tokens(asked), answer_room(asked, limiter)
    waits = [await limiter.wait_for_room(tokens, answer=answer) for _ in range(4)]
    assert reserved_tokens(asked, limiter) == tokens + answer == estimated_tokens(asked) + 400
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] > 0
    # Without max_tokens, RateLimits.output_tokens is kept for the answer.
    assert reserved_tokens(request(), limiter) == estimated_tokens(request()) + 512
    # The server's count gives back what the answer did not use: then there is room again.
    fresh = Limiter(RateLimits(tokens_per_minute=60_000), "c", MessageBus())
    step = RateLimited(Counting(tokens=10), fresh)
    for _ in range(5):
        assert (await step.complete(asked)).rate_limit_wait_ms == 0


async def test_an_idle_limiter_sends_at_once_a_call_whose_answer_room_is_more_than_the_burst() -> (
    None
):
    # 6,000 a minute: a burst of 100, less than the 512 (or 400) kept for an answer. The
    # call waits only for its input; what the answer did not use comes back after it, so
    # calls one after another go at once too, within a 3 s timeout.
    limiter = Limiter(RateLimits(tokens_per_minute=6000), "c", MessageBus())
    step = RateLimited(Counting(tokens=10), limiter)
    asked = request().model_copy(update={"timeout": 3.0})
    bounded = asked.model_copy(update={"max_tokens": 400})
    answers = [await step.complete(r) for r in (asked, asked, bounded, bounded, asked)]
    assert [a.rate_limit_wait_ms for a in answers] == [0.0] * 5


async def test_the_room_kept_for_an_answer_makes_the_next_call_wait_for_it() -> None:
    # Calls at once cannot overrun tokens_per_minute: the first's answer room (512) is
    # taken at once, so the next waits for it, at 100 tokens a second.
    limiter = Limiter(RateLimits(tokens_per_minute=6000), "c", MessageBus())
    assert await limiter.wait_for_room(10, 3.0, answer=512) == 0.0
    with pytest.raises(RateLimitWaitError, match="tokens_per_minute=6000") as refused:
        await limiter.wait_for_room(10, 3.0, answer=512)
    assert (refused.value.retry_after or 0) > (10 + 512 + 10 - 100) / 100 - 0.5
    # The first call's answer used 20 tokens: the rest comes back, and there is room again.
    await limiter.correct(10 + 512, 10 + 20)
    assert await limiter.wait_for_room(10, 3.0, answer=512) == 0.0


async def test_a_call_whose_answer_room_no_minute_could_hold_is_refused_at_once() -> None:
    step = RateLimited(Counting(), Limiter(RateLimits(tokens_per_minute=1000), "m", MessageBus()))
    asked = request().model_copy(update={"max_tokens": 2000})
    with pytest.raises(ConfigurationError, match=r"max_tokens=2000.*tokens_per_minute=1000"):
        await step.complete(asked)
    # Without max_tokens the answer's room is a guess: never more than a minute holds.
    assert (await step.complete(request())).content == "ok"


@pytest.mark.timeout(30)
async def test_no_more_calls_at_once_than_the_concurrency_limit() -> None:
    hold = asyncio.Event()
    inner = Counting(hold=hold)
    step = RateLimited(inner, Limiter(RateLimits(concurrency=3), "c", MessageBus()))
    calls = [asyncio.ensure_future(step.complete(request())) for _ in range(10)]
    for _ in range(50):  # every call gets its turns on the loop: three get in, seven wait
        await asyncio.sleep(0)
    assert inner.running == 3
    hold.set()
    await asyncio.gather(*calls)
    assert inner.most_at_once == 3
    assert len(inner.starts) == 10


@pytest.mark.timeout(30)
def test_the_concurrency_limit_holds_in_each_event_loop_the_limits_are_used_from() -> None:
    # asyncio.run(...) then a sync helper's own loop: the same engine, so the same limiter.
    inner = Counting()
    step = RateLimited(inner, Limiter(RateLimits(concurrency=1), "c", MessageBus()))

    async def burst() -> list[Completion]:
        inner.hold = asyncio.Event()
        calls = [asyncio.ensure_future(step.complete(request())) for _ in range(3)]
        for _ in range(20):  # every call gets its turns: one gets in, two wait
            await asyncio.sleep(0)
        assert inner.running == 1
        inner.hold.set()
        return await asyncio.gather(*calls)

    for _ in range(2):
        assert [a.content for a in asyncio.run(burst())] == ["ok"] * 3
    assert inner.most_at_once == 1


@pytest.mark.timeout(30)
async def test_a_streamed_call_waits_too_and_says_so() -> None:
    limits = RateLimits(requests_per_minute=600, burst_seconds=0.1)  # 10 a second, burst 1
    step = RateLimited(Counting(), Limiter(limits, "c", MessageBus()))
    finals: list[Completion] = []
    for _ in range(2):
        async for chunk in step.stream(request()):
            if chunk.completion is not None:
                finals.append(chunk.completion)
    assert finals[0].rate_limit_wait_ms == 0
    assert finals[1].rate_limit_wait_ms > 0


@pytest.mark.timeout(30)
async def test_a_wait_given_up_gives_its_reservation_back() -> None:
    limits = RateLimits(tokens_per_minute=600, output_tokens=0)  # 10 a second, a burst of 10
    limiter = Limiter(limits, "c", MessageBus())
    step = RateLimited(Counting(tokens=0), limiter)
    big = LLMRequest(model="c", messages=[ChatMessage(role="user", content="word " * 400)])
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(step.complete(big), 0.2)  # would wait ~40 s: given up
    # Its tokens came back: a small call goes at once (it would wait ~40 s otherwise).
    assert (await step.complete(request())).rate_limit_wait_ms < 1000


@pytest.mark.timeout(30)
async def test_a_call_no_minute_could_hold_is_refused_at_once() -> None:
    step = RateLimited(Counting(), Limiter(RateLimits(tokens_per_minute=100), "m", MessageBus()))
    big = LLMRequest(model="m", messages=[ChatMessage(role="user", content="word " * 500)])
    with pytest.raises(ConfigurationError, match="tokens_per_minute=100"):
        await step.complete(big)


@pytest.mark.timeout(60)
async def test_a_rate_limited_server_is_waited_for_never_retried_early(bus: MessageBus) -> None:
    from llmgine.llm import LLMEngine, OpenAIProvider, PromptCommand
    from llmgine.testing import RateLimitedServer

    with RateLimitedServer(requests_per_minute=3, window=1.0) as server:
        provider = OpenAIProvider("m", api_key="k", base_url=server.base_url)
        LLMEngine(bus, provider=provider)  # no limits of its own: the server's 429s teach it
        results = await asyncio.gather(
            *(bus.execute(PromptCommand(prompt=f"n{n}", conversation_id=str(n))) for n in range(5))
        )
        assert all(r.success for r in results)
        assert server.refused >= 1  # five at once: some were told to wait
        assert server.early_retries == 0  # and none came back before the time it was told
        assert len(server.accepted_at) == 5


@pytest.mark.timeout(60)
async def test_a_token_limit_keeps_a_batch_under_the_servers_tokens_per_minute(
    bus: MessageBus,
) -> None:
    from llmgine.llm import LLMEngine, OpenAIProvider, PromptCommand
    from llmgine.testing import RateLimitedServer

    words = "please classify this support ticket about an invoice " * 5  # 40 words
    with RateLimitedServer(requests_per_minute=1000, tokens_per_minute=240, window=2.0) as server:
        provider = OpenAIProvider("m", api_key="k", base_url=server.base_url)
        # 3,600 a minute is 60 a second, a burst of 60: at most 180 in any 2 s, under the
        # server's 240 (a bucket lets its burst through on top of its rate). The server
        # counts the prompt's tokens only: no room kept for the answer.
        limits = RateLimits(tokens_per_minute=3600, output_tokens=0)
        LLMEngine(bus, provider=provider, limits=limits, retries=None)
        results = await asyncio.gather(
            *(
                bus.execute(PromptCommand(prompt=f"{words}{n}", conversation_id=str(n)))
                for n in range(8)
            )
        )
        assert all(r.success for r in results), [r.error for r in results if not r.success]
        assert (server.refused, len(server.accepted_at)) == (0, 8)


@pytest.mark.timeout(60)
async def test_a_wait_for_room_past_the_prompts_timeout_goes_to_the_fallback_at_once(
    bus: MessageBus,
) -> None:
    from llmgine.llm import LLMEngine, PromptCommand

    # One request a minute: the second prompt would wait ~60 s, past its 30 s timeout.
    limits = RateLimits(requests_per_minute=1)
    LLMEngine(bus, provider=Counting(), limits=limits, fallback=["offline"], timeout=30)
    first = await bus.execute(PromptCommand(prompt="one", conversation_id="a"))
    second = await bus.execute(PromptCommand(prompt="two", conversation_id="b"))
    assert first.success and first.result == "ok"
    assert second.success and second.result != "ok", second.error  # offline answered


@pytest.mark.timeout(60)
async def test_a_wait_for_room_past_the_prompts_timeout_fails_at_once_naming_the_limit(
    bus: MessageBus,
) -> None:
    from llmgine.llm import LLMEngine, PromptCommand

    inner = Counting()
    LLMEngine(bus, provider=inner, limits=RateLimits(requests_per_minute=1), timeout=30)
    assert (await bus.execute(PromptCommand(prompt="one", conversation_id="a"))).success
    second = await bus.execute(PromptCommand(prompt="two", conversation_id="b"))
    assert not second.success
    assert "RateLimits(requests_per_minute=1)" in (second.error or "")
    assert "past the prompt's timeout" in (second.error or "")
    assert len(inner.starts) == 1  # nothing was sent
    # The refused call gave its request back: the bucket is where the first call left it.
    third = await bus.execute(PromptCommand(prompt="three", conversation_id="c"))
    assert "RateLimits(requests_per_minute=1)" in (third.error or "")


@pytest.mark.timeout(60)
async def test_a_wait_for_room_longer_than_one_try_but_within_the_prompts_time_is_waited(
    bus: MessageBus,
) -> None:
    from llmgine.llm import LLMEngine, OpenAIProvider, PromptCommand, Retries
    from llmgine.testing import RateLimitedServer

    with RateLimitedServer(requests_per_minute=1000) as server:
        provider = OpenAIProvider("m", api_key="k", base_url=server.base_url)
        # One request a second, no burst: the second waits ~1 s, longer than one try may
        # take (the try's own timeout is for the server's answer) but within the prompt's.
        limits = RateLimits(requests_per_minute=60)
        retries = Retries(attempts=2, attempt_timeout=0.2)
        LLMEngine(bus, provider=provider, limits=limits, retries=retries, timeout=30)
        results = [
            await bus.execute(PromptCommand(prompt=f"n{n}", conversation_id=str(n)))
            for n in range(2)
        ]
        assert all(r.success for r in results), [r.error for r in results]
        assert len(server.accepted_at) == 2


class Timed(Provider):
    """Answers at once, noting the timeout each request gave it."""

    name = "timed"

    def __init__(self) -> None:
        super().__init__("timed-1")
        self.timeouts: list[float | None] = []

    async def complete(self, request: LLMRequest) -> Completion:
        self.timeouts.append(request.timeout)
        return Completion(content="ok")


@pytest.mark.timeout(30)
async def test_after_its_wait_for_room_a_call_is_given_only_the_time_left() -> None:
    limits = RateLimits(requests_per_minute=600, burst_seconds=0.1)  # 10 a second, burst 1
    inner = Timed()
    step = RateLimited(inner, Limiter(limits, "c", MessageBus()))
    asked = request().model_copy(update={"timeout": 30.0})
    await step.complete(asked)
    second = await step.complete(asked)  # waits ~0.1 s for room
    waited = second.rate_limit_wait_ms / 1000
    assert waited > 0
    assert inner.timeouts[1] is not None and inner.timeouts[1] < 30.0 - waited / 2


@pytest.mark.timeout(30)
async def test_a_call_with_no_free_slot_in_its_time_fails_naming_the_concurrency_limit() -> None:
    hold = asyncio.Event()
    inner = Counting(hold=hold)
    step = RateLimited(inner, Limiter(RateLimits(concurrency=1), "c", MessageBus()))
    first = asyncio.ensure_future(step.complete(request()))
    for _ in range(5):  # the first gets its slot and holds it
        await asyncio.sleep(0)
    assert inner.running == 1
    asked = request().model_copy(update={"timeout": 0.05})
    with pytest.raises(RateLimitWaitError, match=r"RateLimits\(concurrency=1\)"):
        await asyncio.wait_for(step.complete(asked), 10)  # not the prompt's generic timeout
    assert len(inner.starts) == 1  # nothing was sent
    hold.set()
    assert (await first).content == "ok"
    assert (await step.complete(asked)).content == "ok"  # the slot is free again


@pytest.mark.timeout(60)
async def test_a_call_queued_behind_the_concurrency_limit_past_its_time_goes_to_the_fallback(
    bus: MessageBus,
) -> None:
    from llmgine.llm import LLMEngine, PromptCommand

    hold, started = asyncio.Event(), asyncio.Event()

    class Started(Counting):
        async def complete(self, request: LLMRequest) -> Completion:
            started.set()
            return await super().complete(request)

    inner = Started(hold=hold)
    limits = {"counting:counting-1": RateLimits(concurrency=1)}
    LLMEngine(bus, provider=inner, limits=limits, fallback=["offline"], prices={})
    first = asyncio.ensure_future(bus.execute(PromptCommand(prompt="one", conversation_id="a")))
    await asyncio.wait_for(started.wait(), 30)  # the first holds the one slot
    second = await bus.execute(PromptCommand(prompt="two", conversation_id="b", timeout=1.0))
    assert second.success and second.result != "ok", second.error  # offline answered
    hold.set()
    assert (await first).success
