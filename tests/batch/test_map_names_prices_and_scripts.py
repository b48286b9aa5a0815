"""``map``'s column names against its own, unknown prices on the bar, bad models, scripts.

Output fields named like ``map``'s columns keep their values under ``output_<name>``;
a cost not known is ``?`` on the progress bar, never ``$0.0000``; a model the engine
cannot run fails once, before any row is sent; a plain script's sync ``map`` leaves a
bus the script can stop (and exit) without touching loops.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pydantic import BaseModel

from llmgine.batch.outcome import RowOutcome
from llmgine.batch.progress import Progress
from llmgine.bus import MessageBus
from llmgine.errors import ConfigurationError
from llmgine.llm import LLMEngine, Price
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import Completion, LLMRequest, Usage

pytestmark = pytest.mark.timeout(120)


class Fixed(Provider):
    """Answers ``answer`` to every prompt (3 input, 2 output tokens), counting the calls."""

    name = "fixed"

    def __init__(self, answer: str) -> None:
        super().__init__("fixed-1")
        self.answer = answer
        self.calls = 0

    async def complete(self, request: LLMRequest) -> Completion:
        self.calls += 1
        return Completion(content=self.answer, usage=Usage(input_tokens=3, output_tokens=2))


class Car(BaseModel):
    model: str
    error: str
    cost_usd: float
    cached: bool
    maker: str


CAR = {"model": "Model 3", "error": "none", "cost_usd": 9.5, "cached": True, "maker": "Tesla"}


async def test_output_fields_named_like_maps_columns_are_prefixed_not_lost(
    bus: MessageBus,
) -> None:
    engine = LLMEngine(bus, provider=Fixed(json.dumps(CAR)))
    frame = pd.DataFrame({"text": ["a Tesla", "a Fiat"], "maker": ["x", "y"]})
    result = await engine.map(frame, "{text}", output_type=Car, progress=False)
    assert list(result.columns[:5]) == [
        "output_model",
        "output_error",
        "output_cost_usd",
        "output_cached",
        "output_maker",
    ]
    row = result.iloc[0]
    assert (row["output_model"], row["output_error"]) == ("Model 3", "none")
    assert (row["output_cost_usd"], row["output_cached"]) == (9.5, True)
    assert row["model"] == "fixed-1" and row["error"] is None and not row["cached"]
    assert not result.columns.duplicated().any()
    assert result.attrs["llmgine.map.fields"] == {
        "model": "output_model",
        "error": "output_error",
        "cost_usd": "output_cost_usd",
        "cached": "output_cached",
        "maker": "output_maker",
    }
    assert result.attrs["llmgine.map.columns"]["model"] == "model"
    assert result.attrs["llmgine.map.columns"]["maker"] == "output_maker"
    joined = frame.join(result)
    assert joined["maker"].tolist() == ["x", "y"]
    assert joined["output_maker"].tolist() == ["Tesla", "Tesla"]


async def test_the_progress_bar_shows_an_unknown_cost_as_a_question_mark_not_zero(
    bus: MessageBus, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = LLMEngine(bus, provider=Fixed("ok"))  # no price: every row's cost is unknown
    frame = pd.DataFrame({"x": ["a", "b", "c"]})
    result = await engine.map(frame, "{x}", progress=True)
    assert result["cost_usd"].isna().all()
    err = capsys.readouterr().err
    assert "cost=?" in err
    assert "$0.0000" not in err


def test_a_cost_partly_unknown_shows_the_known_part_and_a_mark() -> None:
    bar = Progress(4, enabled=False)
    assert bar.cost_text() == "$0.0000"  # nothing answered yet: nothing spent
    bar.add(RowOutcome(0, output="a", input_tokens=3, output_tokens=2, cost_usd=0.008))
    assert bar.cost_text() == "$0.0080"
    bar.add(RowOutcome(1, output="b", input_tokens=3, output_tokens=2))
    assert bar.cost_text() == "$0.0080+?"
    bar.add(RowOutcome.not_run(2, "the budget ran out"))  # nothing spent: still known
    assert bar.cost_text() == "$0.0080+?"
    only_unknown = Progress(1, enabled=False)
    only_unknown.add(RowOutcome(0, output="a", input_tokens=3, output_tokens=2))
    assert only_unknown.cost_text() == "?"


async def test_priced_rows_still_show_their_cost_in_dollars(
    bus: MessageBus, capsys: pytest.CaptureFixture[str]
) -> None:
    prices = {"fixed-1": Price(input_per_mtok=1000.0, output_per_mtok=1000.0)}
    engine = LLMEngine(bus, provider=Fixed("ok"), prices=prices)
    await engine.map(pd.DataFrame({"x": ["a", "b"]}), "{x}", progress=True)
    assert "cost=$0.0100 " in capsys.readouterr().err  # two rows of 5 tokens at $1000/M


@pytest.mark.parametrize("model", ["nosuchprovider:x", "replay:"])
async def test_a_model_the_engine_cannot_run_fails_once_before_any_row_is_sent(
    bus: MessageBus, model: str
) -> None:
    provider = Fixed("ok")
    engine = LLMEngine(bus, provider=provider)
    frame = pd.DataFrame({"x": ["a", "b", "c"]})
    with pytest.raises(ConfigurationError, match=r"Unknown model|replay needs a log file"):
        await engine.map(frame, "{x}", model=model, progress=False)
    assert provider.calls == 0
    result = await engine.map(frame, "{x}", model="offline:small", progress=False)
    assert result["model"].tolist() == ["small"] * 3  # a good model: made once, every row


SCRIPT = """
import asyncio, json, sys
import pandas as pd
from llmgine import LLMEngine, MessageBus

bus = MessageBus(log_dir="logs", log_filename="run.jsonl",
                 enable_console_metrics=False, enable_console_traces=False)
engine = LLMEngine(bus, model="offline")
frame = pd.DataFrame({"review": ["good", "bad"]})
first = frame.llmgine.map("{review}", engine=engine, progress=False)
again = frame.llmgine.map("Again: {review}", engine=engine, progress=False)
print("errors", int(first["error"].notna().sum() + again["error"].notna().sum()))
print("running", bus.is_running)
asyncio.run(bus.stop())
lines = [json.loads(line) for line in open("logs/run.jsonl")]
print("commands", sum(1 for line in lines if line["type"] == "PromptCommand"))
"""


def test_a_plain_script_stops_its_bus_after_a_sync_map_and_exits_cleanly(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
    )  # the cache folder: $LLMGINE_CACHE_DIR, set by conftest.py
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["errors", "0", "running", "False", "commands", "4"]
    assert "Task was destroyed" not in done.stderr
    assert "Traceback" not in done.stderr
    assert "BusStateError" not in done.stderr
