"""An experiment's unknown cost is never 0; empty data, clashing names and re-runs are clear."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from evals_support import quiet_bus

from llmgine.bus import MessageBus
from llmgine.errors import ConfigurationError
from llmgine.evals import Experiment, arun_experiment, contains, exact_match
from llmgine.llm import Completion, LLMEngine, ScriptedProvider, Usage

ROWS = pd.DataFrame({"q": ["a", "b"], "label": ["x", "y"]})


class Unpriced(ScriptedProvider):
    """A provider genai-prices does not know: its calls' price is unknown."""

    name = "my-provider"


def unpriced(n: int) -> Unpriced:
    answer = Completion(content="x", usage=Usage(input_tokens=10, output_tokens=5))
    return Unpriced([answer] * n, model="mystery")


@pytest.mark.timeout(120)
async def test_a_variant_whose_every_price_is_unknown_costs_nan_never_0(tmp_path: Path) -> None:
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, provider=unpriced(2))
        experiment = await arun_experiment(
            ROWS, "{q}", scorers=[exact_match], expected="label", engine=engine, progress=False
        )
    assert experiment.results["cost_usd"].isna().all()
    summary = experiment.summary()
    assert math.isnan(summary.loc["default", "cost_usd"])
    assert summary.loc["default", "unpriced_calls"] == 2
    assert list(summary.columns).index("unpriced_calls") == (
        list(summary.columns).index("cost_usd") + 1
    )


def test_a_summary_keeps_the_known_cost_and_counts_the_unpriced_calls() -> None:
    from llmgine.evals.summary import summarize

    results = pd.DataFrame(
        {
            "row": ["a", "b", "a", "b"],
            "variant": ["some", "some", "none", "none"],
            "repeat": 0,
            "error": None,
            "cost_usd": [0.25, math.nan, math.nan, math.nan],
            "cached": False,
            "latency_ms": 1.0,
        }
    )
    summary = summarize(results)
    assert summary.loc["some", "cost_usd"] == pytest.approx(0.25)
    assert summary.loc["some", "unpriced_calls"] == 1
    assert math.isnan(summary.loc["none", "cost_usd"])
    assert summary.loc["none", "unpriced_calls"] == 2

    ax = Experiment(name="e", results=results.assign(**{"score.s": 1.0})).plot()
    texts = [t.get_text() for t in ax.texts]
    assert "some (+1 of unknown price)" in texts
    assert any("price unknown, not plotted: none" in t for t in texts)
    assert not any(t == "none" for t in texts)  # never drawn at $0
    plt.close(ax.figure)


def test_an_empty_dataset_is_refused_at_run_time() -> None:
    import asyncio

    with pytest.raises(ConfigurationError, match="The data has no rows"):
        asyncio.run(arun_experiment(ROWS.iloc[:0], "{q}", bus=MessageBus(log_dir=None)))


def test_variant_names_that_are_one_as_text_are_refused() -> None:
    import asyncio

    variants: dict[Any, dict[str, Any]] = {1: {}, "1": {"model": "offline"}}
    with pytest.raises(ConfigurationError, match=r"Variants \[1, '1'\] have one name, '1'"):
        asyncio.run(arun_experiment(ROWS, "{q}", variants=variants, bus=MessageBus(log_dir=None)))


@pytest.mark.timeout(120)
async def test_from_log_rebuilds_the_latest_of_two_runs_of_one_name(tmp_path: Path) -> None:
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, model="offline")
        settings: dict[str, Any] = dict(expected="label", engine=engine, progress=False)
        await arun_experiment(ROWS, "First {q}", scorers=[exact_match], name="cmp", **settings)
        second = await arun_experiment(
            ROWS, "Second {q}", scorers=[contains], name="cmp", **settings
        )
    rebuilt = Experiment.from_log(tmp_path / "logs" / "run.jsonl", "cmp")
    assert list(rebuilt.results["output"]) == list(second.results["output"])
    assert rebuilt.score_names == ["contains"]  # not the first run's exact_match
    assert list(rebuilt.results["score.contains"]) == list(second.results["score.contains"])
    assert rebuilt.run == second.run is not None


@pytest.mark.timeout(120)
async def test_a_judge_of_unknown_price_costs_nan_and_counts_as_unpriced(tmp_path: Path) -> None:
    import json

    from llmgine.evals import llm_judge
    from llmgine.llm import OpenAIProvider
    from llmgine.testing import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        for score in (1, 0):
            server.add_text(json.dumps({"score": score, "reason": "graded"}))
        provider = OpenAIProvider("mystery-judge", base_url=server.base_url, api_key="k")
        async with quiet_bus(tmp_path) as bus:
            engine = LLMEngine(bus, provider=provider)  # no price for the judge's model
            experiment = await arun_experiment(
                ROWS,
                "{q}",
                variants={"offline": {"model": "offline"}},  # priced: offline costs 0.0
                scorers=[llm_judge("is right", name="judge")],
                engine=engine,
                progress=False,
            )
            await engine.aclose()
    assert experiment.results["judge_cost_usd"].isna().all()
    summary = experiment.summary()
    assert math.isnan(summary.loc["offline", "judge_cost_usd"])
    assert summary.loc["offline", "cost_usd"] == 0.0  # the prompts' known cost
    assert summary.loc["offline", "unpriced_calls"] == 2  # the judge's answers
