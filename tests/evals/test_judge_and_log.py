"""An LLM judge on the fake OpenAI server, an experiment rebuilt from its log, the plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from evals_support import quiet_bus
from matplotlib.axes import Axes

from llmgine.analysis import query
from llmgine.errors import ConfigurationError
from llmgine.evals import Experiment, arun_experiment, contains, llm_judge
from llmgine.llm import LLMEngine, OpenAIProvider, Price
from llmgine.testing import FakeOpenAIServer

QUESTIONS = pd.DataFrame(
    {"question": ["Is water wet?", "Is fire cold?", "Is ice hot?"], "answer": ["yes", "no", "no"]}
)


def short(output: Any, expected: Any, row: Any) -> bool:
    return len(str(output)) < 1000


@pytest.mark.timeout(120)
async def test_an_llm_judge_grades_through_the_cache_and_its_cost_counts(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        for score in (1, 0, 1):
            server.add_text(json.dumps({"score": score, "reason": f"graded {score}"}))
        provider = OpenAIProvider("fake-gpt", base_url=server.base_url, api_key="k")
        async with quiet_bus(tmp_path) as bus:
            engine = LLMEngine(
                bus,
                provider=provider,
                prices={"fake-gpt": Price(input_per_mtok=1000.0, output_per_mtok=1000.0)},
                cache=tmp_path / "calls.sqlite3",
            )
            judge = llm_judge("answers the question truthfully", name="truthful")
            experiment = await arun_experiment(
                QUESTIONS,
                "{question}",
                variants={"offline": {"model": "offline"}},
                scorers=[judge],
                expected="answer",
                engine=engine,
                progress=False,
            )
            assert len(server.requests) == 3  # the judge's prompts; the rows ran offline
            again = await experiment.arescore([judge])  # the same prompts: from the cache
            assert len(server.requests) == 3
            await engine.aclose()
    results = experiment.results
    assert sorted(results["score.truthful"]) == [0.0, 1.0, 1.0]
    assert sorted(results["reason.truthful"]) == ["graded 0", "graded 1", "graded 1"]
    prompt = server.requests[0]["messages"][-1]["content"]
    assert "answers the question truthfully" in prompt and "You said" in prompt
    assert (results["judge_cost_usd"] > 0).all()
    summary = experiment.summary()
    assert summary.loc["offline", "judge_cost_usd"] == pytest.approx(
        results["judge_cost_usd"].sum()
    )
    assert summary.loc["offline", "cost_usd"] >= summary.loc["offline", "judge_cost_usd"]
    assert list(again.results["score.truthful"]) == list(results["score.truthful"])


@pytest.mark.timeout(120)
async def test_an_experiment_is_rebuilt_from_its_log_alone(tmp_path: Path) -> None:
    def picky(output: Any, expected: Any, row: Any) -> bool:
        if "fire" in str(row["question"]):
            raise ValueError("too hot")
        return True

    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, model="offline")
        experiment = await arun_experiment(
            QUESTIONS,
            "{question}",
            variants={"a": {}, "b": {"prompt": "Answer yes or no: {question}"}},
            scorers=[contains, picky],
            expected="answer",
            repeats=2,
            engine=engine,
            name="truth",
            progress=False,
        )
        await arun_experiment(  # another experiment in the same log is left out
            QUESTIONS, "{question}", engine=engine, name="other", progress=False
        )
        log = bus.log_path
    assert log is not None
    rebuilt = Experiment.from_log(log, "truth")
    columns = ["row", "variant", "repeat", "output", "error", "score.contains", "score.picky"]
    left = experiment.results[columns]
    right = rebuilt.results[columns]
    pd.testing.assert_frame_equal(left, right)
    assert list(rebuilt.results["trace_id"]) == list(experiment.results["trace_id"])
    assert list(rebuilt.results["input_tokens"]) == list(experiment.results["input_tokens"])
    fire = rebuilt.results[rebuilt.results["row"] == 1]
    assert set(fire["scorer_errors"]) == {"picky: ValueError: too hot"}
    assert all(math.isnan(v) for v in fire["score.picky"])
    pd.testing.assert_frame_equal(
        rebuilt.summary()[["n", "score.contains"]], experiment.summary()[["n", "score.contains"]]
    )
    with pytest.raises(ConfigurationError, match="no experiment named 'nope'"):
        Experiment.from_log(log, "nope")
    with pytest.raises(ConfigurationError, match="pass data="):
        await rebuilt.arescore([contains])
    again = await rebuilt.arescore([contains], data=QUESTIONS)  # no bus: nothing published
    assert list(again.results["score.contains"]) == list(experiment.results["score.contains"])
    sql = (
        "SELECT data->>'variant' AS variant, avg(CAST(data->>'score' AS DOUBLE)) AS mean "
        "FROM events WHERE type = 'EvaluationEvent' AND data->>'scorer' = 'contains' "
        "GROUP BY 1 ORDER BY 1"
    )
    means = query(log, sql).set_index("variant")["mean"]
    assert means.to_dict() == experiment.summary()["score.contains"].to_dict()


@pytest.mark.timeout(120)
async def test_the_plot_shows_each_variant_with_its_interval(tmp_path: Path) -> None:
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, model="offline")
        experiment = await arun_experiment(
            QUESTIONS,
            "{question}",
            variants={"a": {}, "b": {"prompt": "{question} yes"}},
            scorers=[contains, short],
            expected="answer",
            engine=engine,
            progress=False,
        )
    ax = experiment.plot("contains")
    assert isinstance(ax, Axes)
    assert [t.get_text() for t in ax.texts] == ["a", "b"]
    assert ax.get_xlabel() == "cost (USD)"
    both = experiment.plot()
    assert len(both.get_legend().get_texts()) == 2
    with pytest.raises(ValueError, match="No score 'nope'"):
        experiment.plot("nope")
