"""The call cache through the engine: hits make no request, only completed answers are kept.

Requests are counted at a real HTTP server (``FakeOpenAIServer`` on 127.0.0.1), through
the ``openai`` provider, as in a notebook.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from llmgine.bus import MessageBus
from llmgine.errors import ConfigurationError
from llmgine.llm import LLMEngine, LLMResponseEvent, OpenAIProvider, PromptCommand
from llmgine.llm.cache import LLMCache, open_cache
from llmgine.llm.cache.acceptance import accepting
from llmgine.llm.pipeline import Cached
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import ChatMessage, Completion, LLMRequest, StreamChunk, Usage
from llmgine.observability.events import TraceEvent
from llmgine.testing import FakeOpenAIServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``cache=True`` writes here, never to the user's cache folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("LLMGINE_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
async def engine(bus: MessageBus, server: FakeOpenAIServer) -> AsyncIterator[LLMEngine]:
    provider = OpenAIProvider("fake-gpt", api_key="sk-test", base_url=server.base_url)
    engine = LLMEngine(bus, provider=provider, cache=True, timeout=30)
    yield engine
    await engine.aclose()


def responses(bus: MessageBus) -> list[LLMResponseEvent]:
    seen: list[LLMResponseEvent] = []
    bus.register_event_handler(LLMResponseEvent, seen.append)
    return seen


def prompt(text: str = "Name a colour.", **fields: Any) -> PromptCommand:
    """A prompt in a conversation of its own, so the same text is the same request."""
    return PromptCommand(prompt=text, conversation_id=uuid.uuid4().hex, **fields)


async def test_the_second_identical_prompt_is_answered_from_the_cache_without_a_request(
    bus: MessageBus, engine: LLMEngine, server: FakeOpenAIServer, cache_dir: Path
) -> None:
    server.add_text("Teal.")
    seen = responses(bus)
    first = await bus.execute(PromptCommand(prompt="Name a colour.", conversation_id="a"))
    second = await bus.execute(PromptCommand(prompt="Name a colour.", conversation_id="b"))
    await bus.wait_for_events()
    assert (first.result, second.result) == ("Teal.", "Teal.")
    assert len(server.requests) == 1
    assert [r.cached for r in seen] == [False, True]
    assert seen[1].cost_usd == 0.0
    assert seen[1].usage.input_tokens == seen[0].usage.input_tokens  # what the answer was
    assert (cache_dir / "calls.sqlite3").exists()
    stats = engine.policies.cache.stats() if engine.policies.cache else None
    assert stats is not None and (stats.hits, stats.misses, stats.entries) == (1, 1, 1)


async def test_a_hit_is_one_llm_span_marked_as_a_cache_hit(
    bus: MessageBus, engine: LLMEngine, server: FakeOpenAIServer
) -> None:
    spans: list[TraceEvent] = []
    bus.register_event_handler(TraceEvent, spans.append)
    await bus.execute(prompt())
    await bus.execute(prompt())
    await bus.wait_for_events()
    ends = [s for s in spans if s.span_kind == "LLM" and s.end_time is not None]
    assert [s.attributes["llmgine.cache.hit"] for s in ends] == [False, True]
    assert len(server.requests) == 1


async def test_a_streamed_hit_replays_the_answer_as_word_deltas(
    bus: MessageBus, engine: LLMEngine, server: FakeOpenAIServer
) -> None:
    server.add_text("Deep ocean blue, like the sea at dusk.")
    seen = responses(bus)
    first = [d async for d in engine.stream("Name a colour.", conversation_id="a")]
    second = [d async for d in engine.stream("Name a colour.", conversation_id="b")]
    await bus.wait_for_events()
    assert "".join(second) == "".join(first) == "Deep ocean blue, like the sea at dusk."
    assert second == ["Deep ", "ocean ", "blue, ", "like ", "the ", "sea ", "at ", "dusk."]
    assert len(server.requests) == 1
    assert [r.cached for r in seen] == [False, True]


async def test_a_streamed_answer_is_a_hit_for_the_same_prompt_unstreamed(
    bus: MessageBus, engine: LLMEngine, server: FakeOpenAIServer
) -> None:
    streamed = "".join([d async for d in engine.stream("Name a colour.", conversation_id="a")])
    result = await bus.execute(PromptCommand(prompt="Name a colour.", conversation_id="b"))
    assert result.result == streamed
    assert len(server.requests) == 1


@pytest.mark.timeout(60)
async def test_ten_identical_concurrent_prompts_make_one_request(
    bus: MessageBus, engine: LLMEngine, server: FakeOpenAIServer
) -> None:
    seen = responses(bus)
    commands = [PromptCommand(prompt="Name a colour.", conversation_id=f"c{i}") for i in range(10)]
    results = await asyncio.gather(*(bus.execute(c) for c in commands))
    await bus.wait_for_events()
    assert all(r.success for r in results)
    assert {r.result for r in results} == {"Echo: Name a colour."}
    assert len(server.requests) == 1
    assert sorted(r.cached for r in seen) == [False] + [True] * 9


async def test_identical_concurrent_streams_make_one_request_and_all_get_the_text(
    engine: LLMEngine, server: FakeOpenAIServer
) -> None:
    server.add_text("Sea green and sky blue.")

    async def stream(conversation: str) -> str:
        return "".join(
            [d async for d in engine.stream("Name a colour.", conversation_id=conversation)]
        )

    texts = await asyncio.gather(*(stream(f"s{i}") for i in range(5)))
    assert texts == ["Sea green and sky blue."] * 5
    assert len(server.requests) == 1


async def test_cache_false_on_a_prompt_asks_the_model_again(
    bus: MessageBus, engine: LLMEngine, server: FakeOpenAIServer
) -> None:
    seen = responses(bus)
    await bus.execute(prompt())
    await bus.execute(PromptCommand(prompt="Name a colour.", conversation_id="x", cache=False))
    await bus.wait_for_events()
    assert len(server.requests) == 2
    assert [r.cached for r in seen] == [False, False]


async def test_a_failed_call_is_not_kept_and_the_next_one_asks_again(
    bus: MessageBus, engine: LLMEngine, server: FakeOpenAIServer
) -> None:
    server.add_error(400, "The model is confused.")
    failed = await bus.execute(prompt())
    answered = await bus.execute(prompt())
    again = await bus.execute(prompt())
    assert not failed.success
    assert (answered.result, again.result) == ("Echo: Name a colour.",) * 2
    assert len(server.requests) == 2  # the failure, then one answer kept for the third


class Stalling(Provider):
    """Streams one word, then stalls until cancelled (the first time); answers after that."""

    name = "stalling"

    def __init__(self) -> None:
        super().__init__("stall-1")
        self.calls = 0

    async def complete(self, request: LLMRequest) -> Completion:
        self.calls += 1
        return Completion(content="Whole answer.")

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        if self.calls:
            async for chunk in super().stream(request):
                yield chunk
            return
        self.calls += 1
        yield StreamChunk(delta="Half ")
        await asyncio.Event().wait()  # the rest never comes: the caller stops first


async def test_a_stream_stopped_early_is_not_kept(bus: MessageBus) -> None:
    provider = Stalling()
    engine = LLMEngine(bus, provider=provider, cache=True)
    async for delta in engine.stream("Count.", conversation_id="a"):
        assert delta == "Half "
        break  # the caller stops listening: the run is cancelled mid-answer
    assert await engine.chat("Count.", conversation_id="b") == "Whole answer."
    assert await engine.chat("Count.", conversation_id="c") == "Whole answer."
    assert provider.calls == 2


class Gate(Provider):
    """A provider whose answers wait until the test opens the gate, then answer in order."""

    name = "gate"

    def __init__(self, *replies: str | Exception) -> None:
        super().__init__("gate-1")
        self.replies = list(replies)
        self.calls = 0
        self.opened = asyncio.Event()
        self.waiting = asyncio.Event()

    async def complete(self, request: LLMRequest) -> Completion:
        self.calls += 1
        reply = self.replies.pop(0)
        self.waiting.set()
        await self.opened.wait()
        if isinstance(reply, Exception):
            raise reply
        return Completion(content=reply, usage=Usage(input_tokens=2, output_tokens=1))


async def test_a_timed_out_call_is_not_kept(bus: MessageBus) -> None:
    gate = Gate("too late", "in time")
    engine = LLMEngine(bus, provider=gate, cache=True)
    # 2 s: on a loaded machine the call must reach the model before its timeout runs out.
    running = asyncio.ensure_future(
        bus.execute(PromptCommand(prompt="Hi", conversation_id="a", timeout=2))
    )
    await asyncio.wait_for(gate.waiting.wait(), 60)  # it waits in the model call
    late = await running
    assert not late.success and "timeout" in str(late.error)
    gate.opened.set()
    assert await engine.chat("Hi", conversation_id="b") == "in time"
    assert gate.calls == 2


async def test_when_the_first_of_identical_calls_fails_the_next_waiter_calls_itself(
    bus: MessageBus, tmp_path: Path
) -> None:
    gate = Gate(RuntimeError("the model fell over"), "second try", "never asked")
    cache = LLMCache(tmp_path / "calls.sqlite3")
    LLMEngine(bus, provider=gate, cache=cache)
    commands = [PromptCommand(prompt="Hi", conversation_id=f"c{i}") for i in range(3)]
    running = [asyncio.ensure_future(bus.execute(c)) for c in commands]
    await gate.waiting.wait()  # the first holds the turn
    while cache.flights.waiting < 2:  # noqa: ASYNC110 -- a count: the two others queue behind it
        await asyncio.sleep(0)
    gate.opened.set()
    results = await asyncio.gather(*running)
    assert [r.success for r in results] == [False, True, True]
    assert [r.result for r in results[1:]] == ["second try", "second try"]
    assert gate.calls == 2
    await cache.aclose()


async def test_other_requests_are_other_keys(
    bus: MessageBus, engine: LLMEngine, server: FakeOpenAIServer
) -> None:
    await bus.execute(prompt())
    await bus.execute(prompt(temperature=0.5))
    await bus.execute(prompt(max_tokens=7))
    await bus.execute(prompt(options={"seed": 3}))
    await bus.execute(prompt(timeout=25))  # the timeout is not part of the key
    await bus.execute(prompt("Name a fruit."))
    assert len(server.requests) == 5


async def test_switching_the_cache_off_and_on_through_the_engines_policies(
    bus: MessageBus, engine: LLMEngine, server: FakeOpenAIServer
) -> None:
    await bus.execute(prompt())
    engine.policies.cache = None
    await bus.execute(prompt())
    engine.policies.cache = open_cache(True, bus)  # the same default file: the answer is there
    await bus.execute(prompt())
    assert len(server.requests) == 2


class Priced(Provider):
    """Answers with a priced usage, as the pricing step below the cache leaves it."""

    name = "priced"

    async def complete(self, request: LLMRequest) -> Completion:
        usage = Usage(input_tokens=10, output_tokens=4, cost_usd=0.0021)
        return Completion(content="ok", usage=usage, model="priced-1")


async def test_a_hit_costs_nothing_and_says_what_it_saved(tmp_path: Path) -> None:
    cache = LLMCache(tmp_path / "calls.sqlite3")
    step = Cached(Priced("priced-1"), cache)
    request = LLMRequest(model="priced-1", messages=[ChatMessage(role="user", content="hi")])
    first = await step.complete(request)
    hit = await step.complete(request)
    await cache.aclose()
    assert (first.cached, first.usage.cost_usd, first.cost_saved_usd) == (False, 0.0021, None)
    assert (hit.cached, hit.usage.cost_usd, hit.cost_saved_usd) == (True, 0.0, 0.0021)
    assert (hit.usage.input_tokens, hit.usage.output_tokens) == (10, 4)
    assert hit.content == "ok" and hit.model == "priced-1"


async def test_cache_redis_on_a_bus_not_connected_says_to_connect(bus: MessageBus) -> None:
    engine = LLMEngine(bus, model="offline", cache="redis")
    result = await bus.execute(PromptCommand(prompt="Hi"))
    assert not result.success
    assert 'cache="redis"' in str(result.error) and "bus.connect" in str(result.error)
    assert engine.policies.cache is not None and engine.policies.cache.path is None


@pytest.mark.parametrize("setting", [3, "", 1.5])
def test_a_cache_setting_of_another_kind_is_a_configuration_error(
    bus: MessageBus, setting: Any
) -> None:
    with pytest.raises(ConfigurationError, match="cache= takes True"):
        LLMEngine(bus, model="offline", cache=setting)


async def test_a_fallback_models_answer_is_not_kept_for_the_model_asked(
    bus: MessageBus, server: FakeOpenAIServer
) -> None:
    from llmgine import Retries

    provider = OpenAIProvider("gpt-x", api_key="k", base_url=server.base_url)
    engine = LLMEngine(
        bus, provider=provider, retries=Retries(attempts=1), fallback=["offline"], cache=True
    )
    server.add_error(503, "overloaded")  # one passing failure: the offline model stands in
    stood_in = await engine.chat("Summarise: the cat sat", conversation_id="1")
    server.add_text("the server's own summary")
    again = await engine.chat("Summarise: the cat sat", conversation_id="2")
    assert again == "the server's own summary" != stood_in
    assert len(server.requests) == 2  # the healthy server was asked again


async def test_two_servers_or_two_paths_of_one_server_are_never_one_cache_entry(
    tmp_path: Path,
) -> None:
    from openai import AsyncOpenAI

    answers: list[str] = []
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        a.add_text("from A")
        b.add_text("from B")
        for where in (a.base_url, b.base_url):  # a client of one's own: its base_url counts
            client = AsyncOpenAI(api_key="x", base_url=where)
            provider = OpenAIProvider("m", client=client)
            engine = LLMEngine(MessageBus(log_dir=None), provider=provider, cache=True)
            answers.append(await engine.chat("hello"))
        assert answers == ["from A", "from B"]
        one = OpenAIProvider("m", api_key="x", base_url=a.base_url).endpoint
        other = OpenAIProvider("m", api_key="x", base_url=a.base_url + "/gateway").endpoint
        assert one != other


class City(BaseModel):
    name: str
    country: str


PARIS = '{"name": "Paris", "country": "France"}'


async def test_a_structured_prompt_that_failed_asks_the_model_again_when_run_again(
    bus: MessageBus, engine: LLMEngine, server: FakeOpenAIServer
) -> None:
    for _ in range(3):  # the first try and both output retries
        server.add_text("Sorry, I cannot answer in JSON.")
    failed = await bus.execute(prompt("A city?", output_type=City, temperature=0.9))
    assert failed.error_type == "StructuredOutputError"
    assert len(server.requests) == 3  # every retry asked the model: none was a hit
    server.add_text(PARIS)  # the model would now answer well
    again = await bus.execute(prompt("A city?", output_type=City, temperature=0.9))
    assert again.result == City(name="Paris", country="France")
    assert len(server.requests) == 4
    third = await bus.execute(prompt("A city?", output_type=City, temperature=0.9))
    assert third.result == again.result and third.metadata["cached"]  # the valid one was kept
    assert len(server.requests) == 4


async def test_the_valid_answer_after_an_output_retry_is_kept_for_its_own_request(
    bus: MessageBus, engine: LLMEngine, server: FakeOpenAIServer
) -> None:
    server.add_text('{"name": "Paris"}')
    server.add_text(PARIS)
    first = await bus.execute(prompt("A city?", output_type=City))
    assert first.success and first.metadata["output_retries"] == 1
    server.add_text(PARIS)
    second = await bus.execute(prompt("A city?", output_type=City))
    assert second.result == first.result
    # The first request's invalid answer was not kept: asked again, it answered well.
    assert len(server.requests) == 3 and not second.metadata["cached"]


@pytest.mark.timeout(60)
async def test_ten_identical_concurrent_structured_prompts_make_one_request(
    bus: MessageBus, engine: LLMEngine, server: FakeOpenAIServer
) -> None:
    server.add_text(PARIS)
    commands = [prompt("A city?", output_type=City) for _ in range(10)]
    results = await asyncio.gather(*(bus.execute(c) for c in commands))
    assert all(r.result == City(name="Paris", country="France") for r in results)
    assert len(server.requests) == 1


class Answers(Provider):
    """Answers with the given texts in turn, counting its calls."""

    name = "answers"

    def __init__(self, *replies: str) -> None:
        super().__init__("answers-1")
        self.replies = list(replies)
        self.calls = 0

    async def complete(self, request: LLMRequest) -> Completion:
        self.calls += 1
        return Completion(content=self.replies.pop(0))


async def test_a_kept_answer_the_prompt_does_not_accept_is_asked_for_again_and_replaced(
    tmp_path: Path,
) -> None:
    provider = Answers("not JSON", PARIS, "never asked")
    cache = LLMCache(tmp_path / "calls.sqlite3")
    cached = Cached(provider, cache)
    request = LLMRequest(model="answers-1", messages=[ChatMessage(role="user", content="A city?")])
    assert (await cached.complete(request)).content == "not JSON"  # kept: no prompt refused it
    with accepting(lambda answer: answer.content == PARIS):
        assert (await cached.complete(request)).content == PARIS  # the kept one is passed over
        hit = await cached.complete(request)
    assert (hit.content, hit.cached, provider.calls) == (PARIS, True, 2)
    assert (cache.hits, cache.misses) == (1, 2)
    await cache.aclose()


async def test_identical_requests_past_a_kept_answer_they_refuse_still_make_one_call(
    tmp_path: Path,
) -> None:
    provider = Answers("not JSON", *[PARIS] * 5)
    cache = LLMCache(tmp_path / "calls.sqlite3")
    cached = Cached(provider, cache)
    request = LLMRequest(model="answers-1", messages=[ChatMessage(role="user", content="A city?")])
    await cached.complete(request)  # kept as an older llmgine kept every answer
    with accepting(lambda answer: answer.content == PARIS):
        answers = await asyncio.gather(*(cached.complete(request) for _ in range(5)))
    assert [a.content for a in answers] == [PARIS] * 5
    assert provider.calls == 2  # the refused one, then one call for the five
    await cache.aclose()


async def test_a_prompt_a_tool_sends_during_a_structured_prompt_keeps_its_plain_answer(
    bus: MessageBus, tmp_path: Path
) -> None:
    from llmgine.llm import ScriptedProvider

    class Model(ScriptedProvider):
        """A script standing in for a real model, whose answers the cache keeps."""

        cacheable = True

    provider = Model([ScriptedProvider.call("ask", question="Say hi."), "Hi there.", PARIS])
    cache = LLMCache(tmp_path / "calls.sqlite3")

    async def ask(question: str) -> str:
        """Ask the model a question of its own.

        Args:
            question: The question.
        """
        return str(await engine.chat(question, conversation_id="inner"))

    engine = LLMEngine(bus, provider=provider, cache=cache, tools=[ask])
    city = await engine.chat("A city?", conversation_id="outer", output_type=City)
    assert city == City(name="Paris", country="France")
    # The tool's own prompt has no output_type: its answer is kept like any other.
    assert await engine.chat("Say hi.", conversation_id="again") == "Hi there."
    assert (await cache.astats()).entries == 3
    await cache.aclose()
