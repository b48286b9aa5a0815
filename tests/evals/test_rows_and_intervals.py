"""Rows told apart by position, intervals by scorer kind and data row, a quiet console."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from evals_support import quiet_bus
from pydantic import BaseModel

from llmgine.bus import MessageBus
from llmgine.evals import Experiment, arun_experiment, exact_match, json_valid
from llmgine.evals.summary import mean_interval, wilson_interval
from llmgine.llm import LLMEngine

pytestmark = pytest.mark.timeout(120)


def right(output: Any, expected: Any, row: Any) -> bool:
    return str(row["answer"]) in str(output)


def even(output: Any, expected: Any, row: Any) -> Any:
    return row["i"] % 2 == 0  # a numpy bool: pass/fail all the same


def ratio(output: Any, expected: Any, row: Any) -> float:
    return 1.0  # a ratio that happens to be exact every time: not a pass/fail score


async def test_rows_sharing_a_label_stay_apart_in_compare_and_from_log(tmp_path: Path) -> None:
    data = pd.DataFrame({"q": ["x", "y", "z"], "answer": ["x", "NOPE", "z"]}, index=["a", "a", "b"])
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, model="offline")
        experiment = await arun_experiment(
            data,
            "say {q}",
            variants={"v1": {}, "v2": {"system_prompt": "s"}},
            scorers=[right],
            engine=engine,
            name="dup",
            progress=False,
        )
        log = bus.log_path
    assert log is not None
    rows = experiment.compare("v1").rows
    assert list(rows["row"]) == ["a", "a", "b"]
    assert list(rows["baseline"]) == [1.0, 0.0, 1.0]
    assert list(experiment.summary()["n"]) == [3, 3]
    rebuilt = Experiment.from_log(log, "dup")
    columns = ["row", "variant", "repeat", "output", "score.right"]
    pd.testing.assert_frame_equal(rebuilt.results[columns], experiment.results[columns])
    assert list(rebuilt.compare("v1").rows["baseline"]) == [1.0, 0.0, 1.0]
    kept = ["n", "score.right", "score.right.low", "score.right.high"]
    pd.testing.assert_frame_equal(rebuilt.summary()[kept], experiment.summary()[kept])


async def test_repeats_of_a_row_are_one_observation_not_several(tmp_path: Path) -> None:
    data = pd.DataFrame({"i": range(10)})
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, model="offline")  # the same answer every time
        once, ten = [
            await arun_experiment(
                data, "item {i}", scorers=[even], repeats=r, engine=engine, progress=False
            )
            for r in (1, 10)
        ]
    assert len(ten.results) == 100
    pd.testing.assert_frame_equal(
        once.summary()[["n", "score.even", "score.even.low", "score.even.high"]],
        ten.summary()[["n", "score.even", "score.even.low", "score.even.high"]],
    )
    low, high = wilson_interval(5, 10)
    assert ten.summary().loc["default", "n"] == 10
    assert ten.summary().loc["default", "score.even.low"] == pytest.approx(low)
    assert ten.summary().loc["default", "score.even.high"] == pytest.approx(high)


async def test_the_interval_kind_follows_what_the_scorer_returns(tmp_path: Path) -> None:
    data = pd.DataFrame({"i": range(4), "answer": ["no"] * 4})
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, model="offline")
        experiment = await arun_experiment(
            data,
            "item {i}",
            scorers=[ratio, exact_match, even],
            expected="answer",
            engine=engine,
            name="kinds",
            progress=False,
        )
        log = bus.log_path
    assert log is not None
    assert sorted(experiment.pass_fail) == ["even", "exact_match"]
    summary = experiment.summary().loc["default"]
    # a float scorer giving only 1.0: Student's t, no spread, not a proportion's interval
    assert (summary["score.ratio.low"], summary["score.ratio.high"]) == (1.0, 1.0)
    # a bool scorer never passing: Wilson, its lower end exactly 0
    assert summary["score.exact_match.low"] == 0.0
    assert summary["score.exact_match.high"] == pytest.approx(wilson_interval(0, 4)[1])
    assert sorted(Experiment.from_log(log, "kinds").pass_fail) == ["even", "exact_match"]


def test_wilson_ends_are_exact_and_the_kind_is_not_guessed_from_values() -> None:
    assert wilson_interval(0, 3)[0] == 0.0
    assert wilson_interval(3, 3)[1] == 1.0
    assert mean_interval([1.0] * 6) == (1.0, 1.0, 1.0)
    mean, low, high = mean_interval([1.0] * 6, pass_fail=True)
    assert mean == high == 1.0 and 0.6 < low < 0.61
    assert math.isnan(mean_interval([0.5])[1])


class Trace(BaseModel):
    span_id: str
    summary: str


async def test_output_fields_and_data_columns_named_like_maps_columns_are_kept_apart(
    tmp_path: Path,
) -> None:
    data = pd.DataFrame({"log": ["GET / 200", "POST /x 500"], "model": ["web", "api"]})
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, model="offline")
        experiment = await arun_experiment(
            data,
            "{log} from {model}",
            output_type=Trace,
            scorers=[json_valid],
            engine=engine,
            progress=False,
        )
        plain = await arun_experiment(
            data, "{log} from {model}", scorers=[json_valid], engine=engine, progress=False
        )
    results = experiment.results
    assert list(results.columns[:5]) == [
        "row",
        "variant",
        "repeat",
        "output.span_id",
        "output.summary",
    ]
    assert results["error"].isna().all() and (results["score.json_valid"] == 1.0).all()
    assert set(results["model"]) == {"offline"}  # the model that answered, not the data's column
    assert list(plain.results.columns[:4]) == ["row", "variant", "repeat", "output"]
    assert set(plain.results["model"]) == {"offline"}


class Rated(BaseModel):
    model: str
    cost_usd: float


async def test_output_fields_named_like_maps_own_columns_are_output_columns(
    tmp_path: Path,
) -> None:
    data = pd.DataFrame({"product": ["phone", "laptop"]})
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, model="offline")
        experiment = await arun_experiment(
            data, "Rate {product}", output_type=Rated, engine=engine, progress=False
        )
    results = experiment.results
    assert list(results.columns[:5]) == [
        "row",
        "variant",
        "repeat",
        "output.model",
        "output.cost_usd",
    ]
    assert results["error"].isna().all()
    assert set(results["model"]) == {"offline"}  # the model that answered
    assert results["output.model"].map(type).eq(str).all()
    assert "output_model" not in results.columns


async def test_scoring_prints_no_console_line_per_output(tmp_path: Path) -> None:
    console = io.StringIO()
    async with MessageBus(log_dir=None, console_stream=console) as bus:  # console on
        engine = LLMEngine(bus, model="offline")
        data = pd.DataFrame({"q": [f"question {i}" for i in range(6)], "a": ["x"] * 6})
        await arun_experiment(
            data,
            "{q}",
            variants={"a": {}, "b": {"system_prompt": "Be brief."}},
            scorers=[exact_match],
            expected="a",
            engine=engine,
            progress=False,
        )
        assert "evaluate" not in console.getvalue()
        assert bus.console.traces  # back on once the experiment ended
        await engine.chat("hello")
    assert "[span] PromptCommand" in console.getvalue()
