"""A ``map`` looks its rows up in the call cache a chunk at a time, before sending any.

A row finished by an earlier run is answered from there without a command, a request or
a store read of its own; a row the cache does not have is sent, and its call does not read
the store again to find nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import BaseModel, field_validator

from llmgine.bus import MessageBus
from llmgine.llm import Budget, LLMCache, LLMEngine, Price, PromptCommand
from llmgine.llm.cache import SQLiteStore, StoreSize
from llmgine.llm.cache.known_misses import KnownMisses
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import Completion, LLMRequest, ToolCall, Usage

PRICES = {"echo-1": Price(input_per_mtok=1000.0, output_per_mtok=2000.0)}
"""A row (4 input, 2 output tokens) costs $0.008."""

ReadLog = Callable[[Path | None], list[dict[str, Any]]]


class Echo(Provider):
    """Answers ``answer to <prompt>`` (or ``answer``), 4 input and 2 output tokens; counts calls."""

    name = "echo"

    def __init__(self, answer: str | None = None, tool_calls: Sequence[ToolCall] = ()) -> None:
        super().__init__("echo-1")
        self.prompts: list[str] = []
        self.answer = answer
        self.tool_calls = list(tool_calls)

    async def complete(self, request: LLMRequest) -> Completion:
        prompt = str(request.messages[-1].content)
        self.prompts.append(prompt)
        await asyncio.sleep(0)  # let the other rows in, as a server's wait would
        if request.messages[-1].role == "tool":
            return Completion(content="done with tools", usage=Usage(input_tokens=4))
        text = self.answer if self.answer is not None else f"answer to {prompt}"
        usage = Usage(input_tokens=4, output_tokens=2)
        return Completion(content=text, usage=usage, tool_calls=self.tool_calls)


class CountingStore(SQLiteStore):
    """A cache file that counts its reads: one key at a time, and many at once."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gets = 0
        self.batch_reads: list[int] = []

    async def get(self, key: str) -> str | None:
        self.gets += 1
        return await super().get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        self.batch_reads.append(len(keys))
        return await super().get_many(keys)


def reviews(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"review": [f"review {i}" for i in range(n)]},
        index=pd.Index([f"r{i}" for i in range(n)], name="id"),
    )


def logged(read_log: ReadLog, bus: MessageBus, kind: str) -> list[dict[str, Any]]:
    bus.flush()
    return [line for line in read_log(bus.log_path) if line["type"] == kind]


async def test_a_rerun_answers_finished_rows_without_a_command_or_a_request(
    bus: MessageBus, tmp_path: Path, read_log: ReadLog
) -> None:
    model = Echo()
    cache = LLMCache(tmp_path / "calls.sqlite3")
    engine = LLMEngine(bus, provider=model, prices=PRICES, cache=cache)
    frame = reviews(600)  # more than one chunk
    first = await engine.map(frame, "{review}", progress=False)
    await bus.wait_for_events()
    commands_first = len(logged(read_log, bus, "PromptCommand"))
    assert commands_first == 600 and len(model.prompts) == 600

    again = await engine.map(frame, "{review}", progress=False)
    await bus.wait_for_events()

    assert len(model.prompts) == 600  # no request
    assert len(logged(read_log, bus, "PromptCommand")) == commands_first  # no command
    assert again["cached"].all() and again["error"].isna().all()
    assert again["output"].tolist() == first["output"].tolist()
    assert (again["cost_usd"] == 0.0).all()
    assert (again["input_tokens"] == 4).all() and (again["output_tokens"] == 2).all()
    assert (again["model"] == "echo-1").all()
    # each chunk of rows is one span in the log, and the rows name its trace
    spans = [
        s["data"]
        for s in logged(read_log, bus, "TraceEvent")
        if s["data"]["name"] == "map rows from cache" and s["data"]["end_time"] is not None
    ]
    last = spans[-3:]  # the re-run's (the first run looked its chunks up too)
    assert {s["span_context"]["trace_id"] for s in last} == set(again["trace_id"])
    assert sorted(s["attributes"]["llmgine.map.rows"] for s in last) == [88, 256, 256]
    assert sum(s["attributes"]["llmgine.map.answered"] for s in last) == 600
    for span in last:  # each row is found by its chunk's trace and its position
        rows = again.iloc[span["attributes"]["llmgine.map.positions"]]
        assert (rows["trace_id"] == span["span_context"]["trace_id"]).all()
    positions = sorted(p for s in last for p in s["attributes"]["llmgine.map.positions"])
    assert positions == list(range(600))
    # counted as cached calls that saved what the first run spent
    assert engine.spend.calls == 1200
    assert engine.spend.to_dict()["cached_calls"] == 600
    assert engine.spend.to_dict()["saved_usd"] == pytest.approx(600 * 0.008)
    assert cache.stats().hits == 600


async def test_a_rerun_on_a_new_engine_reads_the_file_once_a_chunk(
    bus: MessageBus, tmp_path: Path
) -> None:
    path = tmp_path / "calls.sqlite3"
    frame = reviews(300)
    first = LLMEngine(bus, provider=Echo(), cache=LLMCache(path))
    await first.map(frame, "{review}", progress=False)

    store = CountingStore(path)
    model = Echo()
    engine = LLMEngine(bus, provider=model, cache=LLMCache(store=store))
    again = await engine.map(frame, "{review}", progress=False)
    assert again["cached"].all() and model.prompts == []
    assert store.batch_reads == [256, 44] and store.gets == 0
    await store.aclose()


async def test_a_first_run_reads_the_store_once_a_chunk_not_once_a_row(
    bus: MessageBus, tmp_path: Path
) -> None:
    store = CountingStore(tmp_path / "calls.sqlite3")
    cache = LLMCache(store=store)
    model = Echo()
    engine = LLMEngine(bus, provider=model, cache=cache)
    result = await engine.map(reviews(300), "{review}", progress=False)
    assert not result["cached"].any() and len(model.prompts) == 300
    assert store.batch_reads == [256, 44]
    assert store.gets == 0  # each sent row's call knew its answer was not there
    assert cache.stats().misses == 300 and len(cache.known_misses) == 0
    await store.aclose()


async def test_rows_the_cache_half_answers_send_only_the_rest(bus: MessageBus) -> None:
    model = Echo()
    engine = LLMEngine(bus, provider=model, cache=True)
    frame = reviews(10)
    await engine.map(frame.iloc[::2], "{review}", progress=False)  # rows 0, 2, 4, 6, 8
    model.prompts.clear()
    result = await engine.map(frame, "{review}", progress=False)
    assert sorted(model.prompts) == [f"review {i}" for i in (1, 3, 5, 7, 9)]
    assert result["cached"].tolist() == [True, False] * 5
    assert result["output"].tolist() == [f"answer to review {i}" for i in range(10)]


async def test_identical_rows_make_one_call_even_when_looked_up_together(bus: MessageBus) -> None:
    model = Echo()
    engine = LLMEngine(bus, provider=model, cache=True)
    frame = pd.DataFrame({"review": ["same"] * 20})
    result = await engine.map(frame, "{review}", concurrency=8, progress=False)
    assert model.prompts == ["same"]
    assert result["error"].isna().all()
    assert int(result["cached"].sum()) == 19


class Label(BaseModel):
    label: str


def _keyed_label() -> type[BaseModel]:
    """``Label`` again (the same schema, so the same key) whose validator raises a KeyError."""
    canonical = {"positive": "+", "negative": "-"}

    class Label(BaseModel):
        label: str

        @field_validator("label")
        @classmethod
        def known(cls, value: str) -> str:
            return canonical[value]  # a KeyError for "meh", not a ValidationError

    return Label


def _longer_label() -> type[BaseModel]:
    """``Label`` again (the same key) that refuses a one-letter label."""

    class Label(BaseModel):
        label: str

        @field_validator("label")
        @classmethod
        def long_enough(cls, value: str) -> str:
            if len(value) < 2:
                raise ValueError("too short")
            return value

    return Label


async def test_a_structured_rerun_gives_the_model_from_the_cache(bus: MessageBus) -> None:
    model = Echo(answer='{"label": "positive"}')
    engine = LLMEngine(bus, provider=model, cache=True)
    frame = reviews(3)
    await engine.map(frame, "{review}", output_type=Label, progress=False)
    again = await engine.map(frame, "{review}", output_type=Label, progress=False)
    assert len(model.prompts) == 3
    assert again["cached"].all() and again["label"].tolist() == ["positive"] * 3


async def test_a_cached_answer_asking_for_tools_is_run_as_usual(bus: MessageBus) -> None:
    calls: list[str] = []

    def lookup(term: str) -> str:
        """Look a term up."""
        calls.append(term)
        return f"{term} means x"

    call = ToolCall(id="c1", name="lookup", arguments='{"term": "kettle"}')
    model = Echo(tool_calls=[call])
    engine = LLMEngine(bus, provider=model, tools=[lookup], cache=True)
    frame = reviews(2)
    first = await engine.map(frame, "{review}", progress=False)
    assert first["output"].tolist() == ["done with tools"] * 2 and len(calls) == 2
    again = await engine.map(frame, "{review}", progress=False)
    # the tool runs again (its answer is not cached); the calls come from the cache
    assert again["output"].tolist() == ["done with tools"] * 2 and len(calls) == 4
    assert again["cached"].all()


async def test_a_budget_stop_still_answers_the_rows_the_cache_has(bus: MessageBus) -> None:
    frame = reviews(10)
    warm = Echo()
    await LLMEngine(bus, provider=warm, cache=True).map(frame.iloc[6:], "{review}", progress=False)

    model = Echo()
    engine = LLMEngine(bus, provider=model, cache=True, budget=Budget(tokens=20), prices=PRICES)
    result = await engine.map(frame, "{review}", concurrency=1, progress=False)
    errors = result["error"].tolist()
    assert len(model.prompts) == 4  # 6 tokens a row: the fifth is refused
    assert errors[4].startswith("BudgetExceededError")
    assert all(e.startswith("not run: the budget ran out at row 'r4'") for e in errors[5:6])
    assert result["cached"].tolist()[6:] == [True] * 4  # rows 6-9: free, answered
    assert result["error"][6:].isna().all()


async def test_a_prompt_that_keeps_its_turn_or_has_a_window_is_never_answered_ahead(
    bus: MessageBus,
) -> None:
    from llmgine.llm import PromptCommand
    from llmgine.llm.answered_from_cache import answered_from_cache

    engine = LLMEngine(bus, provider=Echo(), cache=True)
    await engine.map(reviews(1), "{review}", progress=False)
    commands = [
        PromptCommand(prompt="review 0", cache=True, remember=False),
        PromptCommand(prompt="review 0", cache=True),  # remember=True: its turn is kept
        PromptCommand(prompt="review 0", cache=True, remember=False, max_context_tokens=500),
        PromptCommand(prompt="review 0", cache=False, remember=False),
    ]
    results = await answered_from_cache(engine, commands)
    assert results[0] is not None and results[0].result.result == "answer to review 0"
    assert results[1:] == [None, None, None]


async def test_a_store_written_before_get_many_still_serves_a_batch(
    bus: MessageBus, tmp_path: Path
) -> None:
    class OneByOne:
        """A store of the protocol before ``get_many`` (a user's): ``get`` and ``put`` only."""

        def __init__(self) -> None:
            self.answers: dict[str, str] = {}

        @property
        def location(self) -> str:
            return "memory"

        async def get(self, key: str) -> str | None:
            return self.answers.get(key)

        async def put(self, key: str, answer: str, *, provider: str, model: str) -> None:
            self.answers[key] = answer

        async def size(self) -> StoreSize:
            return StoreSize(len(self.answers), 0)

        async def clear(self) -> int:
            return 0

        async def aclose(self) -> None:
            return None

    store = OneByOne()
    model = Echo()
    engine = LLMEngine(bus, provider=model, cache=LLMCache(store=store, recent=0))  # type: ignore[arg-type]
    frame = reviews(5)
    await engine.map(frame, "{review}", progress=False)
    again = await engine.map(frame, "{review}", progress=False)
    assert len(model.prompts) == 5 and again["cached"].all() and len(store.answers) == 5


async def test_sqlite_get_many_reads_more_keys_than_one_query_takes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "calls.sqlite3")
    for i in range(0, 1200, 2):
        await store.put(f"k{i}", f"a{i}", provider="p", model="m")
    found = await store.get_many([f"k{i}" for i in range(1200)] + ["k0"])
    assert found == {f"k{i}": f"a{i}" for i in range(0, 1200, 2)}
    assert await store.get_many([]) == {}
    await store.aclose()


def test_a_known_miss_spares_one_lookup_within_its_time() -> None:
    misses = KnownMisses(size=3, ttl=60.0)
    misses.add(["a", "b", "c", "d"])
    assert len(misses) == 3  # the oldest went
    assert not misses.take("a")
    assert misses.take("b") and not misses.take("b")  # once
    misses.discard("c")
    assert not misses.take("c")
    now = [100.0]
    timed = KnownMisses(ttl=60.0, clock=lambda: now[0])
    timed.add(["x", "y"])
    now[0] += 60.0
    assert timed.take("x")  # just within its time
    now[0] += 0.5
    assert not timed.take("y")  # too old: the store is read again


async def test_an_unreadable_cached_answer_is_asked_again_and_replaced(
    bus: MessageBus, tmp_path: Path
) -> None:
    import sqlite3

    path = tmp_path / "calls.sqlite3"
    frame = reviews(2)
    await LLMEngine(bus, provider=Echo(), cache=LLMCache(path)).map(
        frame, "{review}", progress=False
    )
    with sqlite3.connect(path) as db:  # as another llmgine version would have written them
        db.execute("""UPDATE calls SET answer = '{"not": "an answer"}'""")
    db.close()

    model = Echo()
    cache = LLMCache(path)
    engine = LLMEngine(bus, provider=model, cache=cache)
    result = await engine.map(frame, "{review}", progress=False)
    assert result["error"].isna().all() and not result["cached"].any()
    assert len(model.prompts) == 2  # asked again ...
    again = await engine.map(frame, "{review}", progress=False)
    assert again["cached"].all() and len(model.prompts) == 2  # ... and replaced
    assert await engine.chat("review 0", cache=True) == "answer to review 0"
    assert cache.stats().hits == 3


async def test_a_cached_answer_its_output_type_now_refuses_fails_only_its_row(
    bus: MessageBus,
) -> None:
    model = Echo(answer='{"label": "meh"}')
    engine = LLMEngine(bus, provider=model, cache=True)
    frame = reviews(2)
    first = await engine.map(frame, "{review}", output_type=Label, progress=False)
    assert first["error"].isna().all()

    result = await engine.map(frame, "{review}", output_type=_keyed_label(), progress=False)
    assert result["error"].str.startswith("KeyError").all()  # each row fails as when sent
    assert (result["cached"] == True).all()  # noqa: E712 (the model was not asked again)
    assert len(model.prompts) == 2
    assert engine.policies.cache_for(PromptCommand(prompt="x", cache=True)) is not None


async def test_a_cache_that_cannot_be_used_fails_each_row_saying_why(bus: MessageBus) -> None:
    engine = LLMEngine(bus, provider=Echo(), cache="redis")  # the bus is not connected
    result = await engine.map(reviews(3), "{review}", progress=False)
    assert result["error"].str.contains("ConfigurationError").all()
    assert result["error"].str.contains("connect").all()


async def test_a_hit_the_output_type_refuses_is_not_counted_as_one(
    bus: MessageBus, tmp_path: Path
) -> None:
    model = Echo(answer='{"label": "x"}')
    cache = LLMCache(tmp_path / "calls.sqlite3")
    engine = LLMEngine(bus, provider=model, cache=cache)
    frame = reviews(2)
    await engine.map(frame, "{review}", output_type=Label, progress=False)

    model.answer = '{"label": "longer"}'
    result = await engine.map(frame, "{review}", output_type=_longer_label(), progress=False)
    assert result["label"].tolist() == ["longer"] * 2 and len(model.prompts) == 4
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (0, 4)


async def test_a_budget_stop_answers_a_row_its_repeat_finished_meanwhile(bus: MessageBus) -> None:
    model = Echo()
    engine = LLMEngine(bus, provider=model, cache=True, budget=Budget(tokens=20), prices=PRICES)
    frame = pd.DataFrame({"review": ["a", "b", "c", "d", "e", "a"]})
    result = await engine.map(frame, "{review}", concurrency=1, progress=False)
    errors = result["error"].tolist()
    assert errors[4].startswith("BudgetExceededError") and len(model.prompts) == 4
    assert result["output"][5] == "answer to a" and bool(result["cached"][5])  # row 0's answer


async def test_a_chunks_rows_share_its_time_as_their_latency(bus: MessageBus) -> None:
    import time

    engine = LLMEngine(bus, provider=Echo(), cache=True)
    frame = reviews(300)
    await engine.map(frame, "{review}", progress=False)
    started = time.perf_counter()
    again = await engine.map(frame, "{review}", progress=False)
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    assert again["cached"].all()
    assert again["latency_ms"].sum() <= elapsed_ms  # shares of the lookups, not each its whole


async def test_rows_looked_up_after_a_budget_stop_are_not_trusted_missing_later(
    bus: MessageBus, tmp_path: Path
) -> None:
    cache = LLMCache(tmp_path / "calls.sqlite3")
    engine = LLMEngine(bus, provider=Echo(), cache=cache, budget=Budget(tokens=6), prices=PRICES)
    result = await engine.map(reviews(300), "{review}", concurrency=1, progress=False)
    assert result["error"].str.startswith("not run").sum() >= 290
    # the first chunk's rows were looked up to be sent (2 were): the rest are trusted
    # missing for a while; the 44 rows looked up only after the stop are not
    assert len(cache.known_misses) == 256 - 2


async def test_a_map_without_a_cache_looks_nothing_up_and_logs_no_lookup(
    bus: MessageBus, read_log: ReadLog
) -> None:
    model = Echo()
    engine = LLMEngine(bus, provider=model)
    frame = reviews(3)
    await engine.map(frame, "{review}", progress=False, cache=False)
    await engine.map(frame, "{review}", progress=False, cache=False)
    await bus.wait_for_events()
    assert len(model.prompts) == 6
    names = {s["data"]["name"] for s in logged(read_log, bus, "TraceEvent")}
    assert "map rows from cache" not in names and "map row" in names
