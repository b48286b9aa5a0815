"""Retries of provider calls: what is retried, how long it waits, what the log shows."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from llmgine.bus import MessageBus
from llmgine.errors import (
    ConfigurationError,
    ProviderAuthenticationError,
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimitError,
    ProviderTimeoutError,
)
from llmgine.llm import LLMEngine, OpenAIProvider, Price, PromptCommand
from llmgine.llm.events import LLMRetryEvent
from llmgine.llm.limits import RateLimits
from llmgine.llm.pipeline.retrying import Retrying
from llmgine.llm.providers.base import Provider
from llmgine.llm.retries import Retries, is_retryable, retry_after
from llmgine.llm.types import ChatMessage, Completion, LLMRequest, StreamChunk
from llmgine.testing import FakeOpenAIServer

PRICE = Price(input_per_mtok=1.0, output_per_mtok=2.0)
FAST = Retries(attempts=4, initial=0.001, maximum=0.01, jitter=False)


class Flaky(Provider):
    """Fails with the given errors, in order, then answers "ok"; notes when each try began."""

    name = "flaky"

    def __init__(self, *errors: Exception, delta_before_failing: bool = False) -> None:
        super().__init__("flaky-1")
        self.errors = list(errors)
        self.tries: list[float] = []
        self.timeouts: list[float | None] = []
        self.delta_before_failing = delta_before_failing

    async def complete(self, request: LLMRequest) -> Completion:
        self.tries.append(time.monotonic())
        self.timeouts.append(request.timeout)
        if self.errors:
            raise self.errors.pop(0)
        return Completion(content="ok", model="flaky-1")

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        self.tries.append(time.monotonic())
        if self.errors:
            if self.delta_before_failing:
                yield StreamChunk(delta="o")
            raise self.errors.pop(0)
        yield StreamChunk(delta="o")
        yield StreamChunk(delta="k")
        yield StreamChunk(completion=Completion(content="ok", model="flaky-1"))


class Events:
    def __init__(self) -> None:
        self.seen: list[LLMRetryEvent] = []

    async def publish(self, event: LLMRetryEvent) -> None:
        self.seen.append(event)


def retrying(inner: Provider, policy: Retries = FAST) -> tuple[Retrying, Events]:
    events = Events()
    step = Retrying(
        inner, policy, publish=events.publish, conversation_id="c", prompt_id=uuid.uuid4()
    )
    return step, events


def request(timeout: float | None = None) -> LLMRequest:
    return LLMRequest(
        model="flaky-1", messages=[ChatMessage(role="user", content="hi")], timeout=timeout
    )


def test_retry_after_reads_milliseconds_seconds_and_http_dates() -> None:
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": "2"}) == 2.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after({"retry-after": later}) or 0) <= 30
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert retry_after({"retry-after": past}) == 0.0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None
    assert retry_after(None) is None


def test_rate_limits_server_errors_and_connection_errors_are_retried_others_not() -> None:
    assert is_retryable(ProviderRateLimitError("429", status=429))
    assert is_retryable(ProviderError("busy", status=503))
    assert is_retryable(ProviderError("conflict", status=409))
    assert is_retryable(ProviderError("request timeout", status=408))
    assert is_retryable(ProviderConnectionError("refused"))
    assert is_retryable(ProviderTimeoutError("slow"))
    assert not is_retryable(ProviderError("bad request", status=400))
    assert not is_retryable(ProviderError("not found", status=404))
    assert not is_retryable(ProviderAuthenticationError("bad key", status=401))
    assert not is_retryable(ValueError("a bug"))
    assert not is_retryable(ProviderError("no status"))


def test_retries_must_try_at_least_once() -> None:
    with pytest.raises(ConfigurationError, match="1 or more"):
        Retries(attempts=0)
    with pytest.raises(ConfigurationError, match="multiplier"):
        Retries(multiplier=0.5)


def test_backoff_grows_to_its_maximum_and_never_undercuts_retry_after() -> None:
    policy = Retries(initial=1.0, multiplier=2.0, maximum=5.0, jitter=False)
    assert [policy.wait(n, ProviderError("x", status=500)) for n in (1, 2, 3, 4)] == [
        1.0,
        2.0,
        4.0,
        5.0,
    ]
    assert policy.wait(1, ProviderRateLimitError("x", status=429, retry_after=7.0)) == 7.0
    jittered = Retries(initial=1.0, jitter=True)
    assert all(0.5 <= jittered.wait(1, ProviderError("x", status=500)) <= 1.0 for _ in range(50))


async def test_a_rate_limited_call_is_retried_after_the_wait_the_server_asked() -> None:
    inner = Flaky(
        ProviderRateLimitError("slow down", status=429, retry_after=0.05),
        ProviderError("overloaded", status=503),
    )
    step, events = retrying(inner)
    completion = await step.complete(request())
    assert completion.content == "ok"
    assert completion.retries == 2
    assert completion.retry_wait_ms >= 50.0
    assert len(inner.tries) == 3
    assert inner.tries[1] - inner.tries[0] >= 0.05  # never before Retry-After
    assert [(e.attempt, e.status) for e in events.seen] == [(1, 429), (2, 503)]
    assert events.seen[0].wait_s >= 0.05
    assert "slow down" in events.seen[0].error


async def test_an_error_not_worth_retrying_is_raised_at_once() -> None:
    inner = Flaky(ProviderError("bad request", status=400))
    step, events = retrying(inner)
    with pytest.raises(ProviderError, match="bad request"):
        await step.complete(request())
    assert len(inner.tries) == 1
    assert events.seen == []


async def test_the_last_error_is_raised_when_the_tries_run_out() -> None:
    inner = Flaky(*(ProviderError(f"down {n}", status=502) for n in range(5)))
    step, events = retrying(inner, Retries(attempts=3, initial=0.001, jitter=False))
    with pytest.raises(ProviderError, match="down 2"):
        await step.complete(request())
    assert len(inner.tries) == 3
    assert [e.attempt for e in events.seen] == [1, 2]


async def test_a_wait_past_the_prompts_time_left_is_not_waited() -> None:
    inner = Flaky(ProviderRateLimitError("wait a minute", status=429, retry_after=60.0))
    step, events = retrying(inner)
    with pytest.raises(ProviderRateLimitError) as caught:
        await step.complete(request(timeout=5.0))
    assert len(inner.tries) == 1
    assert events.seen == []
    assert "would outlast the prompt's timeout" in str(caught.value)


async def test_each_try_gets_the_time_the_prompt_has_left() -> None:
    inner = Flaky(ProviderError("busy", status=503))
    step, _ = retrying(inner)
    await step.complete(request(timeout=30.0))
    first, second = inner.timeouts
    assert first is not None and second is not None
    assert second < first <= 30.0


async def test_a_stream_is_retried_until_its_answer_begins() -> None:
    inner = Flaky(ProviderConnectionError("refused"))
    step, events = retrying(inner)
    chunks = [chunk async for chunk in step.stream(request())]
    assert "".join(c.delta for c in chunks) == "ok"
    final = chunks[-1].completion
    assert final is not None and final.retries == 1
    assert len(events.seen) == 1


async def test_a_stream_that_broke_after_its_answer_began_is_not_retried() -> None:
    inner = Flaky(ProviderConnectionError("broke"), delta_before_failing=True)
    step, events = retrying(inner)
    seen: list[str] = []

    async def read() -> None:
        async for chunk in step.stream(request()):
            seen.append(chunk.delta)

    with pytest.raises(ProviderConnectionError, match="broke"):
        await read()
    assert seen == ["o"]
    assert len(inner.tries) == 1
    assert events.seen == []


@pytest.mark.timeout(60)
async def test_the_engine_retries_a_rate_limited_server_after_its_retry_after(
    bus: MessageBus, read_log: Any
) -> None:
    with FakeOpenAIServer() as server:
        server.add_error(429, "Rate limit reached", retry_after=0.2)
        server.add_text("at last")
        provider = OpenAIProvider("gpt-4o-mini", base_url=server.base_url)
        engine = LLMEngine(bus, provider=provider, prices={"gpt-4o-mini": PRICE})
        retried: list[LLMRetryEvent] = []
        bus.register_event_handler(LLMRetryEvent, retried.append)
        assert await engine.chat("hi") == "at last"
        await bus.wait_for_events()
    assert len(server.requests) == 2  # the SDK retried nothing itself
    [event] = retried
    assert (event.attempt, event.status) == (1, 429)
    assert event.wait_s >= 0.2
    [response] = [r for r in read_log(bus.log_path) if r["type"] == "LLMResponseEvent"]
    assert response["data"]["retries"] == 1
    assert response["data"]["retry_wait_ms"] >= 200
    spans = [r["data"] for r in read_log(bus.log_path) if r["type"] == "TraceEvent"]
    [llm] = [s for s in spans if s.get("span_kind") == "LLM" and s.get("end_time")]
    assert llm["attributes"]["llmgine.retries"] == 1


@pytest.mark.timeout(60)
async def test_a_fallback_model_answers_when_the_server_keeps_failing(
    bus: MessageBus, read_log: Any
) -> None:
    with FakeOpenAIServer() as server:
        for _ in range(2):
            server.add_error(503, "overloaded")
        provider = OpenAIProvider("gpt-4o-mini", base_url=server.base_url)
        engine = LLMEngine(
            bus,
            provider=provider,
            retries=Retries(attempts=2, initial=0.01, jitter=False),
            fallback=["offline"],
        )
        answer = await engine.chat("hi")
        await bus.wait_for_events()
    assert answer  # the offline model answered
    assert len(server.requests) == 2
    [response] = [r for r in read_log(bus.log_path) if r["type"] == "LLMResponseEvent"]
    assert response["data"]["provider"] == "openai"  # the chain speaks as the primary
    assert response["data"]["fallback_from"][0].startswith(
        "openai:gpt-4o-mini: openai answered 503"
    )
    assert response["data"]["model"] == "offline"


def test_retries_and_limits_refuse_numbers_that_are_not_numbers() -> None:
    with pytest.raises(ConfigurationError):
        Retries(initial=float("nan"))
    with pytest.raises(ConfigurationError):
        Retries(maximum=float("inf"))
    with pytest.raises(ConfigurationError):
        RateLimits(requests_per_minute=float("nan"))


async def test_a_fallback_given_as_one_string_says_to_give_a_list(bus: MessageBus) -> None:
    with pytest.raises(ConfigurationError, match=r"fallback=\['offline'\]"):
        LLMEngine(bus, model="offline", fallback="offline")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("setting", "advice"),
    [
        ({"retries": 3}, "retries=Retries(attempts=3)"),
        ({"retries": 0}, "retries=Retries(attempts=3)"),
        ({"retries": {"attempts": 5}}, "retries=Retries(attempts=3)"),
        ({"fallback": None}, "fallback=[]"),
        ({"fallback": [3]}, "fallback=['openai:gpt-4o-mini']"),
        ({"limits": 60}, "limits=RateLimits(requests_per_minute=60)"),
        ({"limits": []}, "limits=RateLimits(requests_per_minute=60)"),
        ({"limits": {"offline": "60rpm"}}, "limits={'offline': RateLimits("),
        ({"limits": {"offline": None}}, "limits={'offline': RateLimits("),
        ({"limits": {"offline": {"requests_per_minute": 60}}}, "limits={'offline': RateLimits("),
        ({"fallback": [""]}, "fallback=['openai:gpt-4o-mini']"),
        ({"fallback": ["  "]}, "fallback=['openai:gpt-4o-mini']"),
        ({"limits": {"": RateLimits(concurrency=1)}}, "limits={'openai:gpt-4o-mini': RateLimits("),
    ],
)
async def test_retries_limits_and_fallback_of_the_wrong_form_are_refused_when_the_engine_is_made(
    bus: MessageBus, setting: dict[str, Any], advice: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        LLMEngine(bus, model="offline", **setting)
    assert advice in str(raised.value)


async def test_a_fallback_model_given_twice_is_tried_once(bus: MessageBus) -> None:
    engine = LLMEngine(bus, model="scripted", fallback=("offline", "offline", "offline:offline"))
    assert [p.model_string for p in engine.resilience.fallback] == ["offline"]


async def test_a_limits_key_that_names_no_model_of_the_engine_is_warned_of(
    bus: MessageBus, caplog: pytest.LogCaptureFixture
) -> None:
    from llmgine.llm.limits import RateLimits

    one = RateLimits(concurrency=1)
    limits = {"gpt-4o-mni": one, "offline": one, "scripted:scripted": one}
    with caplog.at_level("WARNING", logger="llmgine.llm.pipeline.resilience"):
        engine = LLMEngine(bus, model="offline", limits=limits, fallback=["scripted"])
        await engine.chat("hi")
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1, warned
    assert "'gpt-4o-mni'" in warned[0] and "offline" in warned[0]  # the key, the models
    assert "'offline'" not in warned[0] and "'scripted:scripted'" not in warned[0]


@pytest.mark.timeout(60)
async def test_a_server_that_hangs_is_retried_per_try_then_a_fallback_answers(
    bus: MessageBus,
) -> None:
    import socket

    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(8)  # takes connections, never answers
    port = hanging.getsockname()[1]
    try:
        provider = OpenAIProvider("m", api_key="k", base_url=f"http://127.0.0.1:{port}/v1")
        LLMEngine(
            bus,
            provider=provider,
            timeout=30,
            retries=Retries(attempts=2, initial=0.01, jitter=False, attempt_timeout=0.5),
            fallback=["offline"],
        )
        retried: list[LLMRetryEvent] = []
        bus.register_event_handler(LLMRetryEvent, retried.append)
        result = await bus.execute(PromptCommand(prompt="hi"))
        await bus.wait_for_events()
    finally:
        hanging.close()
    assert result.success, result.error
    assert result.metadata["model"] == "offline"
    assert [e.attempt for e in retried] == [1]  # the first try timed out and was retried
    with pytest.raises(ConfigurationError):
        Retries(attempt_timeout=0)


async def test_the_error_after_the_last_try_says_how_many_tries_were_made_and_what_to_do() -> None:
    inner = Flaky(*(ProviderError("openai answered 503: overloaded", status=503) for _ in range(3)))
    step, _ = retrying(inner, Retries(attempts=3, initial=0.001, jitter=False))
    with pytest.raises(ProviderError) as caught:
        await step.complete(request())
    message = str(caught.value)
    assert message.startswith("openai answered 503: overloaded. Tried 3 times")
    assert "Retries(attempts=...)" in message and "fallback=" in message
    assert caught.value.status == 503


@pytest.mark.timeout(60)
async def test_when_every_model_failed_the_error_does_not_advise_a_fallback_it_tried(
    bus: MessageBus,
) -> None:
    with FakeOpenAIServer() as first, FakeOpenAIServer() as second:
        for server in (first, second):
            for _ in range(2):
                server.add_error(503, "overloaded")
        LLMEngine(
            bus,
            provider=OpenAIProvider("m1", api_key="sk-test", base_url=first.base_url),
            fallback=[OpenAIProvider("m2", api_key="sk-test", base_url=second.base_url)],
            retries=Retries(attempts=2, initial=0.001, jitter=False),
        )
        result = await bus.execute(PromptCommand(prompt="hi"))
    error = str(result.error)
    assert error.startswith("Every model failed: openai:m1: ") and "openai:m2: " in error
    assert "Tried 2 times" in error and "Retries(attempts=...)" in error
    assert "fallback=" not in error and ".;" not in error


@pytest.mark.timeout(60)
async def test_a_404_for_a_model_the_server_does_not_have_says_to_check_the_model_name(
    bus: MessageBus,
) -> None:
    with FakeOpenAIServer() as server:
        server.add_error(404, "The model `gpt-4o-mni` does not exist")
        provider = OpenAIProvider("gpt-4o-mni", api_key="sk-test", base_url=server.base_url)
        LLMEngine(bus, provider=provider, prices={"gpt-4o-mni": PRICE})
        result = await bus.execute(PromptCommand(prompt="hi"))
    assert not result.success
    assert "does not exist. Check the model name" in str(result.error)
    assert len(server.requests) == 1  # a 404 is not retried


@pytest.mark.timeout(60)
async def test_a_fallback_answer_counts_the_retries_of_the_model_that_failed(
    bus: MessageBus, read_log: Any
) -> None:
    with FakeOpenAIServer() as server:
        for _ in range(3):
            server.add_error(503, "overloaded")
        provider = OpenAIProvider("gpt-4o-mini", api_key="sk-test", base_url=server.base_url)
        LLMEngine(
            bus,
            provider=provider,
            prices={"gpt-4o-mini": PRICE},
            retries=Retries(attempts=3, initial=0.01, jitter=False),
            fallback=["offline"],
        )
        result = await bus.execute(PromptCommand(prompt="hi"))
        await bus.wait_for_events()
    assert result.success and result.metadata["model"] == "offline"
    assert len(server.requests) == 3
    [response] = [r for r in read_log(bus.log_path) if r["type"] == "LLMResponseEvent"]
    assert response["data"]["retries"] == 2  # the primary's two retries, before the fallback
    assert response["data"]["retry_wait_ms"] >= 30.0  # 10 ms, then 20 ms
    assert "Tried 3 times" in response["data"]["fallback_from"][0]
    spans = [r["data"] for r in read_log(bus.log_path) if r["type"] == "TraceEvent"]
    [llm] = [s for s in spans if s.get("span_kind") == "LLM" and s.get("end_time")]
    assert llm["attributes"]["llmgine.retries"] == 2
    assert llm["attributes"]["llmgine.retry_wait_ms"] >= 30.0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("asked", ["inf", "1e309", "nan", "1e12"])
async def test_an_absurd_retry_after_is_taken_as_not_given_in_the_error_and_the_wait(
    bus: MessageBus, asked: str
) -> None:
    retried: list[LLMRetryEvent] = []
    bus.register_event_handler(LLMRetryEvent, retried.append)
    with FakeOpenAIServer() as server:
        LLMEngine(
            bus,
            provider=OpenAIProvider("gpt-4o-mini", api_key="sk-test", base_url=server.base_url),
            prices={"gpt-4o-mini": PRICE},
            retries=Retries(attempts=2, initial=0.01, maximum=0.01, jitter=False),
        )
        for _ in range(2):
            server.add_error(429, "odd", retry_after=asked)
        failed = await bus.execute(PromptCommand(prompt="hi"))
        await bus.wait_for_events()
    assert not failed.success and "Tried 2 times" in str(failed.error)
    assert "wait" not in str(failed.error) and "inf" not in str(failed.error)
    assert [e.wait_s for e in retried] == [0.01]  # the backoff: the server's wait is unknown
    assert "inf" not in retried[0].error


@pytest.mark.timeout(30)
async def test_a_retry_never_waits_forever_when_any_provider_asks_an_absurd_wait() -> None:
    inner = Flaky(ProviderRateLimitError("slow down", status=429, retry_after=float("inf")))
    step, events = retrying(inner)
    completion = await step.complete(request())
    assert completion.content == "ok" and completion.retries == 1
    assert [e.wait_s for e in events.seen] == [0.001]  # FAST's backoff, not the server's inf
