"""``map`` through an engine: the frame it returns, failing rows, budgets, resume, interrupts.

The models here are small fakes in this file (they count calls, fail on cue, hold rows
in flight); the real servers are in test_map_servers.py and the Redis workers in
tests/bus/remote/test_remote_map.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel

from llmgine.batch import amap, map_rows
from llmgine.bus import MessageBus
from llmgine.bus.middleware import CallNext
from llmgine.errors import CommandFailedError, ConfigurationError, HandlerNotFoundError
from llmgine.llm import Budget, LLMEngine, Price
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import Completion, LLMRequest, Usage
from llmgine.messages import Command, CommandResult

pytestmark = pytest.mark.timeout(120)


class Echo(Provider):
    """Answers ``answer to <prompt>`` (4 input and 2 output tokens); fails on ``FAIL``.

    Keeps every request, the most calls it had in flight at once, and may hold each
    call until ``gate`` is set.
    """

    name = "echo"

    def __init__(self, *, gate: asyncio.Event | None = None, answer: str | None = None) -> None:
        super().__init__("echo-1")
        self.requests: list[LLMRequest] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.cancelled = 0
        self.gate = gate
        self.answer = answer
        self.waiting = asyncio.Event()
        self.full_at = 0
        self.full = asyncio.Event()
        """Set when ``full_at`` calls are in flight at once."""

    async def complete(self, request: LLMRequest) -> Completion:
        self.requests.append(request)
        prompt = str(request.messages[-1].content)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight == self.full_at:
            self.full.set()
        try:
            if self.gate is not None:
                self.waiting.set()
                await self.gate.wait()
            else:
                await asyncio.sleep(0)  # let the other rows in, as a server's wait would
            if "FAIL" in prompt:
                raise ValueError(f"cannot answer\n  {prompt!r}")
            text = self.answer if self.answer is not None else f"answer to {prompt}"
            return Completion(content=text, usage=Usage(input_tokens=4, output_tokens=2))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


class Label(BaseModel):
    label: str
    score: float


REVIEWS = pd.DataFrame(
    {"review": ["great", "awful", "fine", "FAIL me"], "stars": [5, 1, 3, 2]},
    index=pd.Index(["r1", "r2", "r3", "r4"], name="id"),
)


@pytest.fixture
def echo() -> Echo:
    return Echo()


PRICES = {"echo-1": Price(input_per_mtok=1000.0, output_per_mtok=2000.0)}
"""A row (4 input, 2 output tokens) costs $0.008."""


@pytest.fixture
def engine(bus: MessageBus, echo: Echo) -> LLMEngine:
    return LLMEngine(bus, provider=echo, prices=PRICES)


async def test_the_frame_is_on_the_inputs_index_with_every_column(engine: LLMEngine) -> None:
    result = await engine.map(REVIEWS, "Review: {review} ({stars})", progress=False)
    assert result.index.equals(REVIEWS.index)
    assert list(result.columns) == [
        "output", "error", "input_tokens", "output_tokens", "cost_usd", "latency_ms",
        "cached", "model", "trace_id",
    ]  # fmt: skip
    assert result.loc["r1", "output"] == "answer to Review: great (5)"
    assert result["error"].isna().tolist() == [True, True, True, False]
    assert result.loc["r4", "error"].startswith("ValueError: cannot answer 'Review: FAIL me (2)'")
    assert "\n" not in result.loc["r4", "error"]
    assert result["input_tokens"].tolist()[:3] == [4, 4, 4]
    assert result["input_tokens"].dtype == "Int64"
    assert result["cost_usd"].tolist()[:3] == pytest.approx([0.008] * 3)
    assert math.isnan(result.loc["r4", "cost_usd"])
    assert (result["latency_ms"][:3] > 0).all()
    assert result["model"].tolist()[:3] == ["echo-1"] * 3
    assert result["trace_id"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert result["trace_id"].nunique() == 4
    joined = REVIEWS.join(result)
    assert joined.shape == (4, 2 + 9)


async def test_each_row_is_a_prompt_command_of_its_own_with_its_label(
    engine: LLMEngine, bus: MessageBus, read_log: Callable[[Path | None], list[dict[str, Any]]]
) -> None:
    frame = REVIEWS.iloc[:3]
    result = await engine.map(frame, "{review}", progress=False, metadata={"experiment": "e1"})
    await bus.wait_for_events()
    bus.flush()
    commands = [r for r in read_log(bus.log_path) if r["type"] == "PromptCommand"]
    assert len(commands) == 3
    rows = {c["metadata"]["llmgine.map"]["row"]: c for c in commands}
    assert sorted(rows) == ["r1", "r2", "r3"]
    assert len({c["data"]["conversation_id"] for c in commands}) == 3
    assert {c["metadata"]["experiment"] for c in commands} == {"e1"}
    for label, command in rows.items():  # the log joins back to the rows by trace and label
        assert command["trace_id"] == result.loc[label, "trace_id"]


async def test_structured_output_becomes_columns_prefixed_when_the_frame_has_one(
    bus: MessageBus,
) -> None:
    model = Echo(answer='{"label": "positive", "score": 0.75}')
    engine = LLMEngine(bus, provider=model, prices=PRICES)
    frame = pd.DataFrame({"review": ["a", "b"], "label": ["gold", "gold"]})
    result = await engine.map(frame, "{review}", output_type=Label, progress=False)
    assert list(result.columns[:2]) == ["output_label", "score"]
    assert result["output_label"].tolist() == ["positive", "positive"]
    assert result["score"].tolist() == [0.75, 0.75]
    assert frame.join(result).shape == (2, 2 + 10)


class Rating(BaseModel):
    label: str
    score: int
    confidence: float
    sarcastic: bool


async def test_number_and_bool_fields_become_nullable_typed_columns(bus: MessageBus) -> None:
    answer = '{"label": "pos", "score": 4, "confidence": 0.5, "sarcastic": true}'
    engine = LLMEngine(bus, provider=Echo(answer=answer), prices=PRICES)
    frame = pd.DataFrame({"review": ["good", "FAIL me"]})
    result = await engine.map(frame, "{review}", output_type=Rating, progress=False)
    assert result["error"].notna().tolist() == [False, True]
    assert result["score"].dtype == "Int64" and result["score"][0] == 4
    assert result["confidence"].dtype == "Float64" and result["confidence"][0] == 0.5
    assert result["sarcastic"].dtype == "boolean" and result["sarcastic"][0]
    assert result[["score", "confidence", "sarcastic"]].iloc[1].isna().all()
    assert result["label"].dtype == object and result["label"].tolist() == ["pos", None]
    assert len(result[result["sarcastic"].fillna(False)]) == 1  # a mask as it is


async def test_a_frame_with_multiindex_columns_joins_the_result(engine: LLMEngine) -> None:
    columns = pd.MultiIndex.from_tuples([("text", "en"), ("text", "fr"), ("output", "")])
    frame = pd.DataFrame([["good", "bon", 1], ["bad", "mauvais", 2]], columns=columns)
    result = await engine.map(frame, lambda row: row[("text", "en")], progress=False)
    joined = frame.join(result)
    assert joined.shape == (2, 3 + 9)
    assert joined[("llm_output", "")].tolist() == ["answer to good", "answer to bad"]
    assert joined[("output", "")].tolist() == [1, 2]
    assert joined[("error", "")].isna().all()


async def test_an_empty_frame_sends_nothing_and_keeps_the_columns(
    engine: LLMEngine, echo: Echo
) -> None:
    result = await engine.map(REVIEWS.iloc[:0], "{review}")
    assert len(result) == 0
    assert "output" in result.columns
    assert echo.requests == []


async def test_repeated_labels_and_a_multiindex_keep_the_rows_in_order(engine: LLMEngine) -> None:
    repeated = pd.DataFrame({"x": ["a", "b", "c"]}, index=[7, 7, 7])
    result = await engine.map(repeated, "{x}", progress=False)
    assert result.index.equals(repeated.index)
    assert result["output"].tolist() == ["answer to a", "answer to b", "answer to c"]
    assert pd.concat([repeated, result], axis=1)["x"].tolist() == ["a", "b", "c"]

    index = pd.MultiIndex.from_tuples([("s1", 1), ("s1", 2), ("s2", 1)], names=["set", "n"])
    multi = pd.DataFrame({"x": ["a", "b", "c"]}, index=index)
    result = await engine.map(multi, "{x}", progress=False)
    assert result.index.equals(index)
    assert result.loc[("s1", 2), "output"] == "answer to b"
    assert multi.join(result)["output"].tolist() == ["answer to a", "answer to b", "answer to c"]


async def test_nan_and_non_text_cells_fill_the_template(engine: LLMEngine, echo: Echo) -> None:
    frame = pd.DataFrame(
        {"text": ["hi", None], "n": [1.5, math.nan], "when": pd.to_datetime(["2026-01-02", None])}
    )
    result = await engine.map(frame, "{text}|{n:.2f}|{when:%Y}", progress=False)
    assert result["output"].tolist() == ["answer to hi|1.50|2026", "answer to ||"]


async def test_a_row_the_template_cannot_fill_fails_alone(engine: LLMEngine, echo: Echo) -> None:
    frame = pd.DataFrame({"price": [1.0, "n/a", 3.0]})
    result = await engine.map(frame, "Price {price:.2f}", progress=False)
    assert result["output"].tolist()[0] == "answer to Price 1.00"
    assert result["error"][1].startswith("template: ValueError")
    assert result["error"][2] is None
    assert len(echo.requests) == 2


async def test_a_function_template_that_raises_fails_its_row(engine: LLMEngine) -> None:
    def prompt(row: pd.Series) -> str:  # type: ignore[type-arg]
        if row["stars"] == 1:
            raise KeyError("no such thing")
        return f"{row['review']} {row.name}"

    result = await engine.map(REVIEWS.iloc[:3], prompt, progress=False)
    assert result.loc["r1", "output"] == "answer to great r1"
    assert result.loc["r2", "error"] == "template: KeyError: 'no such thing'"


async def test_errors_raise_stops_at_the_first_failure(engine: LLMEngine, echo: Echo) -> None:
    frame = pd.DataFrame({"x": ["FAIL 0", *[f"ok {i}" for i in range(20)]]})
    with pytest.raises(CommandFailedError, match=r"row 0 failed: ValueError: cannot answer"):
        await engine.map(frame, "{x}", errors="raise", concurrency=2, progress=False)
    assert len(echo.requests) < len(frame)


async def test_a_budget_that_runs_out_stops_sending_and_says_so(bus: MessageBus) -> None:
    model = Echo()
    engine = LLMEngine(bus, provider=model, budget=Budget(tokens=20), prices=PRICES)
    frame = pd.DataFrame({"x": [f"row {i}" for i in range(10)]})
    result = await engine.map(frame, "{x}", concurrency=1, progress=False)
    answered = result["error"].isna().sum()
    assert answered == 4  # 6 tokens a row: the fourth row passes 20, the fifth is refused
    assert result["error"][4].startswith("BudgetExceededError")
    not_run = result["error"][5:].tolist()
    assert all(e.startswith("not run: the budget ran out at row 4") for e in not_run)
    assert len(model.requests) == 4


async def test_the_stop_names_the_first_row_the_budget_refused_with_rows_in_flight(
    bus: MessageBus,
) -> None:
    async def yields_once(command: Command, call_next: CallNext) -> CommandResult:
        await asyncio.sleep(0)  # as a middleware doing I/O would: the other senders go on
        return await call_next(command)

    bus.add_middleware(yields_once)
    model = Echo(gate=asyncio.Event())
    model.full_at = 4  # the first four rows pass the budget's check, then wait together
    engine = LLMEngine(bus, provider=model, budget=Budget(tokens=20), prices=PRICES)
    frame = pd.DataFrame({"x": [f"row {i}" for i in range(16)]})
    run = asyncio.ensure_future(
        engine.map(frame, "{x}", concurrency=4, progress=False, cache=False)
    )
    await asyncio.wait_for(model.full.wait(), timeout=60)
    assert model.gate is not None
    model.gate.set()  # 24 tokens spent at once: each sender's next row is refused
    result = await run
    errors = result["error"].tolist()
    refused = [i for i, e in enumerate(errors) if e and e.startswith("BudgetExceededError")]
    assert len(refused) > 1  # several senders were refused before sending stopped
    not_run = [e for e in errors if e and e.startswith("not run")]
    assert not_run
    assert all(e.startswith(f"not run: the budget ran out at row {refused[0]} ") for e in not_run)


async def test_errors_raise_raises_when_the_budget_runs_out(bus: MessageBus) -> None:
    model = Echo()
    engine = LLMEngine(bus, provider=model, budget=Budget(tokens=20), prices=PRICES)
    frame = pd.DataFrame({"x": [f"row {i}" for i in range(16)]})
    with pytest.raises(CommandFailedError, match=r"row \d+ failed: BudgetExceededError"):
        await engine.map(frame, "{x}", concurrency=4, errors="raise", progress=False)
    assert len(model.requests) < len(frame)


async def test_the_same_map_again_comes_from_the_cache(engine: LLMEngine, echo: Echo) -> None:
    frame = pd.DataFrame({"x": [f"row {i}" for i in range(12)]})
    first = await engine.map(frame, "{x}", progress=False)
    assert not first["cached"].any()
    again = await engine.map(frame, "{x}", progress=False)
    assert again["cached"].all()
    assert len(echo.requests) == 12
    assert again["output"].tolist() == first["output"].tolist()
    fresh = await engine.map(frame, "{x}", progress=False, cache=False)
    assert not fresh["cached"].any()
    assert len(echo.requests) == 24


async def test_no_more_rows_than_concurrency_are_in_flight(engine: LLMEngine, echo: Echo) -> None:
    # The calls wait until 5 are in flight at once (as a slow server's would), then
    # answer: 5 are reached whatever the timing, and a map sending more would pile its
    # extra rows up at the gate too (no cache: no lookup on the cache's thread between).
    echo.gate, echo.full_at = asyncio.Event(), 5
    frame = pd.DataFrame({"x": range(200)})
    mapped = asyncio.ensure_future(
        engine.map(frame, "{x}", concurrency=5, progress=False, cache=False)
    )
    await asyncio.wait_for(echo.full.wait(), timeout=60)
    for _ in range(20):  # a map that sent more would have them at the gate by now
        await asyncio.sleep(0)
    echo.gate.set()
    await mapped
    assert echo.most_in_flight == 5


async def test_a_cancelled_map_cancels_its_rows_in_flight(bus: MessageBus) -> None:
    model = Echo(gate=asyncio.Event())
    model.full_at = 4
    engine = LLMEngine(bus, provider=model, prices=PRICES)
    frame = pd.DataFrame({"x": range(50)})
    task = asyncio.ensure_future(engine.map(frame, "{x}", concurrency=4, progress=False))
    await model.full.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert model.cancelled == 4
    assert model.in_flight == 0
    assert len(model.requests) == 4


class Interrupting(Echo):
    """Raises ``KeyboardInterrupt`` (as Ctrl-C would) on the ``after``-th call."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    async def complete(self, request: LLMRequest) -> Completion:
        if len(self.requests) == self.after:
            raise KeyboardInterrupt
        return await super().complete(request)


class CtrlC(Echo):
    """Presses Ctrl-C (a real SIGINT) while the loop waits, after ``after`` calls."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    async def complete(self, request: LLMRequest) -> Completion:
        if len(self.requests) == self.after:
            asyncio.get_running_loop().call_soon(signal.raise_signal, signal.SIGINT)
            await asyncio.Event().wait()  # in flight when the interrupt comes
        return await super().complete(request)


@pytest.mark.parametrize("model_type", [Interrupting, CtrlC])
def test_an_interrupted_sync_map_returns_the_rows_that_finished(
    model_type: type[Interrupting | CtrlC],
) -> None:
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    model = model_type(after=5)
    engine = LLMEngine(bus, provider=model, prices=PRICES)
    frame = pd.DataFrame({"x": [f"row {i}" for i in range(30)]})
    result = frame.llmgine.map("{x}", engine=engine, concurrency=1, progress=False)
    assert result["output"][:5].tolist() == [f"answer to row {i}" for i in range(5)]
    assert result["output"][5:].isna().all()
    assert result["error"][5:].str.startswith("not run: interrupted").all()
    model.after = -1
    again = frame.llmgine.map("{x}", engine=engine, concurrency=1, progress=False)
    assert again["error"].isna().all()
    assert again["cached"][:5].all() and not again["cached"][5:].any()
    from llmgine.notebook.sync import run_sync

    run_sync(bus.stop())


def test_the_sync_map_runs_in_a_plain_script_on_a_bus_not_started() -> None:
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    model = Echo()
    engine = LLMEngine(bus, provider=model, prices=PRICES)
    result = map_rows(pd.DataFrame({"x": ["a", "b"]}), "{x}", engine=engine, progress=False)
    assert result["output"].tolist() == ["answer to a", "answer to b"]
    from llmgine.notebook.sync import run_sync

    run_sync(bus.stop())


async def test_the_progress_bar_counts_rows_errors_tokens_and_cost(
    engine: LLMEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    await engine.map(REVIEWS, "{review}", progress=True)
    err = capsys.readouterr().err
    assert "4/4" in err
    assert "errors=1" in err
    assert "tokens=18" in err  # three rows of 6 tokens
    assert "cost=$0.0240" in err
    await engine.map(REVIEWS, "{review}", progress=False)
    assert capsys.readouterr().err == ""


async def test_the_console_is_quiet_during_a_map_and_back_after(
    bus: MessageBus, engine: LLMEngine, console: io.StringIO
) -> None:
    await engine.map(REVIEWS.iloc[:2], "{review}", progress=False)
    assert "[span]" not in console.getvalue()
    await engine.chat("hello")
    assert "[span] PromptCommand" in console.getvalue()


async def test_settings_reach_every_rows_request(engine: LLMEngine, echo: Echo) -> None:
    await engine.map(
        REVIEWS.iloc[:2],
        "{review}",
        system_prompt="Be brief.",
        temperature=0.25,
        seed=7,
        options={"top_p": 0.5},
        progress=False,
    )
    for request in echo.requests:
        assert request.messages[0].content == "Be brief."
        assert request.temperature == 0.25
        assert request.options == {"seed": 7, "top_p": 0.5}


async def test_model_runs_every_row_on_another_model(engine: LLMEngine, echo: Echo) -> None:
    result = await engine.map(REVIEWS.iloc[:2], "{review}", model="offline", progress=False)
    assert result["model"].tolist() == ["offline", "offline"]
    assert echo.requests == []


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"concurrency": 0}, "concurrency must be"),
        ({"concurrency": 2.5}, "concurrency must be"),
        ({"concurrency": True}, "concurrency must be"),
        ({"concurrency": np.bool_(True)}, "concurrency must be"),
        ({"concurrency": np.float64(2.0)}, "concurrency must be"),
        ({"errors": "ignore"}, "errors must be 'keep' or 'raise'"),
        ({"temperature": "hot"}, "temperature"),
        ({"timeout": -1}, "timeout"),
    ],
)
async def test_bad_settings_fail_before_anything_is_sent(
    engine: LLMEngine, echo: Echo, settings: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        await engine.map(REVIEWS, "{review}", **settings)
    assert echo.requests == []


async def test_a_numpy_integer_is_a_concurrency(engine: LLMEngine, echo: Echo) -> None:
    result = await engine.map(REVIEWS, "{review}", concurrency=np.int64(2), progress=False)
    assert len(result) == len(REVIEWS) and len(echo.requests) == len(REVIEWS)


async def test_a_bus_with_nothing_to_answer_prompts_is_refused(bus: MessageBus) -> None:
    with pytest.raises(HandlerNotFoundError, match="pass engine="):
        await amap(REVIEWS, "{review}", bus=bus)


async def test_not_a_frame_is_a_type_error(engine: LLMEngine) -> None:
    with pytest.raises(TypeError, match="takes a pandas DataFrame; got list"):
        await engine.map([1, 2], "{x}")  # type: ignore[arg-type]


async def test_with_neither_engine_nor_bus_amap_runs_on_a_bus_of_its_own() -> None:
    result = await amap(pd.DataFrame({"x": ["a"]}), "{x}", model="offline", progress=False)
    assert result["model"].tolist() == ["offline"]
    assert result["error"].isna().all()


async def test_a_thousand_rows_on_the_offline_model(bus: MessageBus) -> None:
    engine = LLMEngine(bus, model="offline")
    frame = pd.DataFrame({"n": range(1000)})
    result = await engine.map(frame, "Number {n}", concurrency=32, progress=False)
    assert result["error"].isna().all()
    assert result["output"].str.contains('"Number 999"').iloc[-1]
    assert result["output"].nunique() == 1000
    assert json.dumps(result["input_tokens"].sum().item()) != "0"


async def test_ten_thousand_rows(bus: MessageBus, echo: Echo, engine: LLMEngine) -> None:
    frame = pd.DataFrame({"n": range(10_000)}, index=pd.RangeIndex(10_000) * 2)
    result = await engine.map(frame, "{n}", concurrency=64, progress=False, cache=False)
    assert len(result) == 10_000
    assert result["error"].isna().all()
    assert result["output"].iloc[-1] == "answer to 9999"
    assert echo.most_in_flight <= 64


async def test_result_columns_the_frame_has_already_are_prefixed_so_join_works(
    engine: LLMEngine,
) -> None:
    products = pd.DataFrame({"name": ["mug", "pot"], "model": ["M1", "P2"], "error": [0.1, 0.2]})
    result = await engine.map(products, "Describe the {name} {model}", progress=False)
    assert "llm_model" in result.columns and "llm_error" in result.columns
    assert result.attrs["llmgine.map.columns"]["model"] == "llm_model"
    joined = products.join(result)
    assert joined["model"].tolist() == ["M1", "P2"]
    assert joined["llm_model"].tolist() == ["echo-1", "echo-1"]
    again = await engine.map(joined, "Again {name}", progress=False)  # a frame with answers
    assert set(joined.columns).isdisjoint(again.columns)
    assert joined.join(again)["llm_output"].tolist() == [
        "answer to Again mug",
        "answer to Again pot",
    ]


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"api_key": "sk-secret-123"}, "api_key"),
        ({"extra_headers": {"Authorization": "Bearer sk-secret-123"}}, "Authorization"),
        ({"options": {"extra_query": {"token": "sk-secret-123"}}}, "token"),
    ],
)
async def test_a_credential_in_the_options_is_refused_and_never_shown(
    engine: LLMEngine,
    echo: Echo,
    settings: dict[str, Any],
    says: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ConfigurationError, match=f"credential.*{says}") as info:
        await engine.map(REVIEWS, "{review}", **settings)
    assert "sk-secret-123" not in str(info.value)
    assert "sk-secret-123" not in caplog.text
    assert echo.requests == []


@pytest.mark.parametrize("name", ["stream", "conversation_id", "prompt", "session_id"])
async def test_fields_map_sets_itself_are_refused(engine: LLMEngine, echo: Echo, name: str) -> None:
    with pytest.raises(ConfigurationError, match=f"map sets {name} itself"):
        await engine.map(REVIEWS, "{review}", **{name: True})
    assert echo.requests == []


async def test_an_engine_and_a_bus_swapped_say_so(engine: LLMEngine, bus: MessageBus) -> None:
    with pytest.raises(TypeError, match="engine= takes an LLMEngine; got MessageBus"):
        await amap(REVIEWS, "{review}", engine=bus)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bus= takes a MessageBus; got LLMEngine"):
        await amap(REVIEWS, "{review}", bus=engine)  # type: ignore[arg-type]


async def test_a_map_leaves_no_conversation_behind(engine: LLMEngine) -> None:
    await engine.map(pd.DataFrame({"x": range(30)}), "{x}", progress=False)
    assert len(engine.conversations.list()) == 0
