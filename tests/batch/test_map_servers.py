"""``map`` against servers: the real llama.cpp server, and the fake one failing, refusing
(429), slow, or answering in JSON.

Every row is a ``PromptCommand`` the engine runs with its retries, limits and timeout;
these tests check that what the servers did shows in the right row of the frame.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pandas as pd
import pytest
from pydantic import BaseModel

from llmgine.analysis import load_events, query
from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer
from llmgine.errors import HandlerNotFoundError
from llmgine.llm import LLMEngine, OpenAIProvider, RateLimits, Retries
from llmgine.local_server import LlamaServer
from llmgine.testing import FakeOpenAIServer, FakeReply, RateLimitedServer

Answer = Callable[[str, int], FakeReply | None]


class ByPrompt(FakeOpenAIServer):
    """The fake server answering each request by its prompt and how often it came:
    ``answer(prompt, attempt)`` gives the reply (``None``: the echo), whatever the order
    in which concurrent rows arrive."""

    def __init__(self, answer: Answer, **options: Any) -> None:
        super().__init__(**options)
        self.answer = answer
        self.attempts: Counter[str] = Counter()

    def _admit(self, body: dict[str, Any]) -> FakeReply | None:
        prompt = str(body["messages"][-1]["content"])
        with self._lock:
            self.attempts[prompt] += 1
            attempt = self.attempts[prompt]
        return self.answer(prompt, attempt)


@pytest.fixture
async def providers() -> AsyncIterator[Callable[[str], OpenAIProvider]]:
    """OpenAI providers on a server's URL; their kept-alive connections closed after."""
    made: list[OpenAIProvider] = []

    def make(base_url: str, model: str = "fake-gpt") -> OpenAIProvider:
        made.append(OpenAIProvider(model, api_key="sk-test", base_url=base_url, max_retries=0))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


def tickets(*texts: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"text": list(texts)}, index=pd.Index([f"t{i}" for i in range(len(texts))], name="id")
    )


@pytest.mark.timeout(300)
async def test_real_answers_from_llama_cpp_join_back_to_their_rows_through_the_log(
    bus: MessageBus, llama_server: LlamaServer
) -> None:
    provider = OpenAIProvider(llama_server.model, base_url=llama_server.base_url, max_retries=0)
    engine = LLMEngine(bus, provider=provider)
    frame = tickets("The invoice is wrong.", "Thanks, it works now!", "Where is my parcel?")
    try:
        result = await engine.map(
            frame,
            "In one word, the topic of this message: {text}",
            max_tokens=12,
            temperature=0,
            concurrency=2,
            progress=False,
        )
    finally:
        await provider.aclose()
    assert result.index.equals(frame.index)
    assert result["error"].isna().all(), result["error"].dropna().tolist()
    assert all(isinstance(o, str) and o.strip() for o in result["output"])
    assert (result["input_tokens"] > 0).all() and (result["output_tokens"] > 0).all()
    assert result["trace_id"].notna().all() and result["trace_id"].nunique() == len(frame)
    assert not result["cached"].any()

    await bus.wait_for_events()
    commands = load_events(bus, types=["PromptCommand"])
    labels = [json.loads(m)["llmgine.map"]["row"] for m in commands["metadata"]]
    logged = pd.Series(commands["trace_id"].tolist(), index=labels)
    assert logged.sort_index().to_dict() == result["trace_id"].sort_index().to_dict()
    calls = query(bus, "SELECT trace_id, input_tokens, output_tokens FROM llm_calls")
    joined = result.reset_index().merge(calls, on="trace_id", suffixes=("", "_log"))
    assert sorted(joined["id"]) == sorted(frame.index)
    assert (joined["input_tokens"] == joined["input_tokens_log"]).all()
    assert (joined["output_tokens"] == joined["output_tokens_log"]).all()


def failing(prompt: str, attempt: int) -> FakeReply | None:
    """400 for "bad" rows always; 500 for "flaky" rows on their first try."""
    if "bad" in prompt:
        return FakeReply(status=400, error="Invalid 'messages[0].content':\nnot allowed here.")
    if "flaky" in prompt and attempt == 1:
        return FakeReply(status=500, error="The server had an error while processing it.")
    return None


ROWS = ("fine 0", "bad 1", "flaky 2", "fine 3", "bad 4", "flaky 5", "fine 6")


@pytest.mark.timeout(120)
async def test_rows_a_server_fails_say_so_in_one_line_and_the_batch_goes_on(
    bus: MessageBus, providers: Callable[[str], OpenAIProvider]
) -> None:
    with ByPrompt(failing) as server:
        engine = LLMEngine(bus, provider=providers(server.base_url), retries=None)
        result = await engine.map(tickets(*ROWS), "{text}", concurrency=3, progress=False)
    errors = dict(zip(ROWS, result["error"], strict=True))
    outputs = dict(zip(ROWS, result["output"], strict=True))
    for row in ("fine 0", "fine 3", "fine 6"):
        assert (outputs[row], errors[row]) == (f"Echo: {row}", None)
    for row, status in (("bad 1", 400), ("bad 4", 400), ("flaky 2", 500), ("flaky 5", 500)):
        assert outputs[row] is None
        assert f"openai answered {status}" in errors[row]
        assert "\n" not in errors[row]
    assert "Invalid 'messages[0].content'" in errors["bad 1"]  # the server's own words
    assert sum(server.attempts.values()) == len(ROWS)  # one try each: no retries


@pytest.mark.timeout(120)
async def test_with_retries_the_rows_a_server_failed_once_recover_and_the_bad_ones_do_not(
    bus: MessageBus, providers: Callable[[str], OpenAIProvider]
) -> None:
    with ByPrompt(failing) as server:
        retries = Retries(attempts=3, initial=0.01, maximum=0.05)
        engine = LLMEngine(bus, provider=providers(server.base_url), retries=retries)
        result = await engine.map(tickets(*ROWS), "{text}", concurrency=3, progress=False)
    errors = dict(zip(ROWS, result["error"], strict=True))
    for row in ("fine 0", "flaky 2", "fine 3", "flaky 5", "fine 6"):
        assert errors[row] is None, errors[row]
    assert result["output"].iloc[2] == "Echo: flaky 2"
    assert "openai answered 400" in errors["bad 1"] and "openai answered 400" in errors["bad 4"]
    assert server.attempts["flaky 2"] == server.attempts["flaky 5"] == 2
    assert server.attempts["bad 1"] == 1  # a 400 is not worth a retry


@pytest.mark.timeout(180)
async def test_a_batch_under_the_engines_rate_limits_is_never_refused_by_the_server(
    bus: MessageBus, providers: Callable[[str], OpenAIProvider]
) -> None:
    # The server takes 5 requests a second; the engine sends 2 a second with a burst of 2:
    # at most 4 in any second.
    with RateLimitedServer(requests_per_minute=5, window=1.0) as server:
        limits = RateLimits(requests_per_minute=120)
        engine = LLMEngine(bus, provider=providers(server.base_url), limits=limits, retries=None)
        frame = tickets(*(f"ticket {i}" for i in range(10)))
        result = await engine.map(frame, "{text}", concurrency=8, progress=False)
    assert result["error"].isna().all(), result["error"].dropna().tolist()
    assert result["output"].tolist() == [f"Echo: ticket {i}" for i in range(10)]
    assert (server.refused, len(server.accepted_at)) == (0, 10)


@pytest.mark.timeout(120)
async def test_a_row_slower_than_the_prompt_timeout_fails_with_a_timeout_the_others_answer(
    bus: MessageBus, providers: Callable[[str], OpenAIProvider]
) -> None:
    def slow_rows(body: dict[str, Any]) -> float:
        return 60.0 if "slow" in str(body["messages"][-1]["content"]) else 0.0

    with FakeOpenAIServer(delay=slow_rows) as server:
        engine = LLMEngine(bus, provider=providers(server.base_url))
        frame = tickets("quick 0", "slow 1", "quick 2", "slow 3")
        result = await engine.map(frame, "{text}", timeout=1.0, concurrency=4, progress=False)
    assert result["output"].tolist() == ["Echo: quick 0", None, "Echo: quick 2", None]
    assert result["error"].iloc[0] is None and result["error"].iloc[2] is None
    for error in result["error"].iloc[[1, 3]]:
        assert error.startswith("ProviderTimeoutError:")
        assert "longer than its timeout of 1 s" in error


class Ticket(BaseModel):
    label: str
    urgent: bool


def as_json(prompt: str, attempt: int) -> FakeReply:
    label = "billing" if "invoice" in prompt.lower() else "delivery"
    return FakeReply(content=json.dumps({"label": label, "urgent": "!" in prompt}))


@pytest.mark.timeout(120)
async def test_structured_answers_from_a_server_become_columns_of_their_rows(
    bus: MessageBus, providers: Callable[[str], OpenAIProvider]
) -> None:
    frame = tickets("My invoice is wrong!", "Where is my parcel?", "Invoice copy, please.")
    frame["label"] = "to do"  # the input has a column named like a field
    with ByPrompt(as_json) as server:
        engine = LLMEngine(bus, provider=providers(server.base_url))
        result = await engine.map(
            frame, "Classify: {text}", output_type=Ticket, concurrency=3, progress=False
        )
    assert result["error"].isna().all(), result["error"].dropna().tolist()
    assert result["output_label"].tolist() == ["billing", "delivery", "billing"]
    assert result["urgent"].tolist() == [True, False, False]
    joined = frame.join(result)
    assert joined["label"].tolist() == ["to do"] * 3
    assert joined.loc["t1", "output_label"] == "delivery"


@pytest.mark.timeout(60)
async def test_a_redis_bus_with_no_worker_for_prompts_fails_once_before_any_row(
    redis_server: RedisServer,
) -> None:
    from uuid import uuid4

    from llmgine.batch import amap

    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    await bus.connect(redis_server.url, f"map-no-worker-{uuid4().hex[:8]}", heartbeat=0.2)
    try:
        with pytest.raises(HandlerNotFoundError, match="No handler for PromptCommand"):
            await amap(pd.DataFrame({"a": list("abc")}), "{a}", bus=bus, progress=False)
        assert bus.stats.commands_executed == 0
    finally:
        await bus.stop()
