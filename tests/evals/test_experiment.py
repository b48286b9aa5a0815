"""run_experiment on the offline and scripted models: tidy results, scores, intervals, repeats."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pytest
from counting_model import Counting
from evals_support import quiet_bus
from pydantic import BaseModel

from llmgine.bus import MessageBus
from llmgine.errors import ConfigurationError
from llmgine.evals import (
    EvaluationEvent,
    Experiment,
    arun_experiment,
    contains,
    exact_match,
    json_valid,
    matches_schema,
    regex,
)
from llmgine.llm import LLMEngine, ScriptedProvider

CAPITALS = pd.DataFrame(
    {
        "country": ["France", "Japan", "Peru", "Kenya"],
        "capital": ["Paris", "Tokyo", "Lima", "Nairobi"],
    },
    index=pd.Index(["fr", "jp", "pe", "ke"], name="code"),
)


def mentions_country(output: Any, expected: Any, row: Any) -> bool:
    return str(row["country"]) in str(output)


def length(output: Any, expected: Any, row: Any) -> float:
    return float(len(str(expected)))


@pytest.mark.timeout(120)
async def test_offline_variants_give_tidy_deterministic_results(tmp_path: Path) -> None:
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, model="offline")
        experiment = await arun_experiment(
            CAPITALS,
            "What is the capital of {country}?",
            variants={
                "plain": {},
                "terse": {"prompt": "Capital of {country}, one word.", "model": "offline:terse"},
            },
            scorers=[contains, mentions_country, json_valid],
            expected="capital",
            repeats=2,
            engine=engine,
            name="capitals",
            progress=False,
        )
    results = experiment.results
    assert len(results) == 4 * 2 * 2
    assert list(results.columns[:4]) == ["row", "variant", "repeat", "output"]
    for column in ("error", "cost_usd", "latency_ms", "input_tokens", "cached", "trace_id"):
        assert column in results.columns
    assert list(results["row"][:4]) == ["fr", "jp", "pe", "ke"]
    assert results.groupby(["variant", "repeat"]).size().to_dict() == {
        ("plain", 0): 4,
        ("plain", 1): 4,
        ("terse", 0): 4,
        ("terse", 1): 4,
    }
    # the offline model repeats the prompt: it names the country, never the capital
    assert (results["score.mentions_country"] == 1.0).all()
    assert (results["score.contains"] == 0.0).all()
    assert (results["score.json_valid"] == 0.0).all()
    summary = experiment.summary()
    assert list(summary.index) == ["plain", "terse"]
    assert summary.loc["plain", "n"] == 4  # data rows: their repeats are averaged first
    assert summary.loc["plain", "errors"] == 0.0
    assert summary.loc["terse", "score.mentions_country"] == 1.0
    assert 0.5 < summary.loc["terse", "score.mentions_country.low"] < 0.6  # Wilson, 4 of 4
    assert summary.loc["terse", "score.mentions_country.high"] == 1.0
    for column in ("cost_usd", "latency_p50_ms", "latency_p95_ms"):
        assert column in summary.columns
    assert "capitals" in experiment._repr_html_()


@pytest.mark.timeout(120)
async def test_known_right_and_wrong_answers_give_known_means_and_intervals(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider(["Paris", "Tokyo", "Lima", "Mombasa"] + ["Lyon"] * 4)
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, provider=provider)
        experiment = await arun_experiment(
            CAPITALS,
            "Capital of {country}?",
            variants={"good": {"system_prompt": "Be right."}, "bad": {"system_prompt": "No."}},
            scorers=[exact_match, length],
            expected="capital",
            concurrency=1,  # the script's replies go to the rows in order
            engine=engine,
            progress=False,
        )
    summary = experiment.summary()
    good, bad = summary.loc["good"], summary.loc["bad"]
    assert good["score.exact_match"] == 0.75
    # the Wilson 95 % interval of 3 of 4
    assert good["score.exact_match.low"] == pytest.approx(0.3006, abs=1e-4)
    assert good["score.exact_match.high"] == pytest.approx(0.9544, abs=1e-4)
    assert bad["score.exact_match"] == 0.0
    assert bad["score.exact_match.low"] == 0.0
    assert bad["score.exact_match.high"] == pytest.approx(0.4899, abs=1e-4)
    # lengths 5, 5, 4, 7: Student's t with 3 degrees of freedom (3.182)
    assert good["score.length"] == 5.25
    sd = math.sqrt(((5 - 5.25) ** 2 * 2 + (4 - 5.25) ** 2 + (7 - 5.25) ** 2) / 3)
    assert good["score.length.low"] == pytest.approx(5.25 - 3.182 * sd / 2)
    assert good["score.length.high"] == pytest.approx(5.25 + 3.182 * sd / 2)
    requests = [r.messages[0].content for r in provider.requests]
    assert requests[:4] == ["Be right."] * 4 and requests[4:] == ["No."] * 4
    comparison = experiment.compare("good")
    assert comparison.totals.loc[("bad", "exact_match"), "losses"] == 3
    assert comparison.totals.loc[("bad", "exact_match"), "ties"] == 1
    assert comparison.totals.loc[("bad", "length"), "ties"] == 4
    lost = comparison.disagreements
    assert list(lost["row"]) == ["fr", "jp", "pe"]
    assert set(lost["outcome"]) == {"loss"}


@pytest.mark.timeout(120)
async def test_repeats_are_distinct_calls_and_a_rerun_is_answered_from_the_cache(
    tmp_path: Path,
) -> None:
    counting = Counting()
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, provider=counting, cache=tmp_path / "calls.sqlite3")
        run: dict[str, Any] = dict(
            data=CAPITALS, prompt="{country}", repeats=3, engine=engine, progress=False
        )
        first = await arun_experiment(**run)
        assert counting.calls == 4 * 3
        again = await arun_experiment(**run)
        assert counting.calls == 4 * 3
    assert not first.results["cached"].any()
    assert again.results["cached"].all()


@pytest.mark.timeout(120)
async def test_a_raising_scorer_gives_nan_and_a_note_not_a_failed_run(tmp_path: Path) -> None:
    def picky(output: Any, expected: Any, row: Any) -> bool:
        if row["country"] == "Peru":
            raise ValueError("no opinion on Peru")
        return True

    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, model="offline")
        experiment = await arun_experiment(
            CAPITALS, "{country}", scorers=[picky], engine=engine, progress=False
        )
        await bus.wait_for_events()
    results = experiment.results.set_index("row")
    assert math.isnan(results.loc["pe", "score.picky"])
    assert results.loc["pe", "scorer_errors"] == "picky: ValueError: no opinion on Peru"
    assert results.loc["fr", "score.picky"] == 1.0
    assert results.loc["fr", "scorer_errors"] is None
    assert experiment.summary().loc["default", "score.picky"] == 1.0


@pytest.mark.timeout(120)
async def test_rescoring_and_adding_a_scorer_send_no_prompt(tmp_path: Path) -> None:
    counting = Counting()
    events: list[EvaluationEvent] = []
    async with quiet_bus(tmp_path) as bus:
        bus.register_event_handler(EvaluationEvent, events.append)
        engine = LLMEngine(bus, provider=counting)
        experiment = await arun_experiment(
            CAPITALS,
            "{country}",
            scorers=[contains],
            expected="capital",
            engine=engine,
            progress=False,
        )
        calls = counting.calls
        rescored = await experiment.arescore([regex(r"answer to [A-Z]", name="answered")])
        await experiment.aadd_scorer(mentions_country)
        await bus.wait_for_events()
    assert counting.calls == calls == 4
    assert list(rescored.score_names) == ["answered"]
    assert (rescored.results["score.answered"] == 1.0).all()
    assert experiment.score_names == ["contains", "mentions_country"]
    assert (experiment.results["score.mentions_country"] == 1.0).all()
    assert sorted({e.scorer for e in events}) == ["answered", "contains", "mentions_country"]
    assert len(events) == 3 * 4


def test_wrong_settings_fail_before_anything_is_sent() -> None:
    import asyncio

    def run(**kwargs: Any) -> Any:
        settings: dict[str, Any] = dict(data=CAPITALS, prompt="{country}", bus=MessageBus())
        return asyncio.run(arun_experiment(**{**settings, **kwargs}))

    with pytest.raises(ConfigurationError, match="unknown settings"):
        run(variants={"a": {"temperature": 0}})
    with pytest.raises(ConfigurationError, match="not a column"):
        run(expected="answer")
    with pytest.raises(ConfigurationError, match="repeats"):
        run(repeats=0)
    with pytest.raises(ConfigurationError, match="Two scorers"):
        run(scorers=[contains, contains])
    with pytest.raises(ConfigurationError, match="lambda"):
        run(scorers=[lambda o, e, r: True])


class Verdict(BaseModel):
    label: Literal["positive", "negative"]


@pytest.mark.timeout(120)
async def test_structured_outputs_become_columns_and_scorers_get_the_model(
    tmp_path: Path,
) -> None:
    def right(output: Any, expected: Any, row: Any) -> bool:
        assert isinstance(output, Verdict)
        return output.label == expected

    data = pd.DataFrame(
        {"text": ["it is negative", "so positive"], "label": ["negative", "negative"]}
    )
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, model="offline")
        experiment = await arun_experiment(
            data,
            "Sentiment of: {text}",
            scorers=[right, matches_schema(Verdict), json_valid],
            expected="label",
            output_type=Verdict,
            engine=engine,
            progress=False,
        )
    results = experiment.results
    assert list(results.columns[:4]) == ["row", "variant", "repeat", "output.label"]
    assert list(results["output.label"]) == ["negative", "positive"]  # the word each names
    assert list(results["score.right"]) == [1.0, 0.0]
    assert (results["score.matches_schema"] == 1.0).all()
    assert (results["score.json_valid"] == 1.0).all()


def test_the_built_in_scorers_on_text() -> None:
    row = pd.Series({"q": "x"})
    assert exact_match(" Paris\n", "Paris", row) and not exact_match("paris", "Paris", row)
    assert contains("It is PARIS.", "paris", row)
    assert json_valid('{"a": 1}', None, row) and not json_valid("{a: 1}", None, row)
    schema = matches_schema(Verdict, name="verdict")
    assert schema.__name__ == "verdict"
    assert schema('{"label": "positive"}', None, row)
    assert not schema('{"label": "meh"}', None, row)
    assert regex(r"\d+")("call 42", None, row) and not regex(r"\d+")("none", None, row)


def test_the_sync_form_runs_in_a_plain_script_and_rescores_there() -> None:
    from llmgine.evals import run_experiment
    from llmgine.notebook.sync import run_sync

    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    engine = LLMEngine(bus, model="offline")
    experiment = run_experiment(
        CAPITALS, "{country}", scorers=[mentions_country], engine=engine, progress=False
    )
    assert (experiment.results["score.mentions_country"] == 1.0).all()
    experiment.add_scorer(contains)
    rescored = experiment.rescore([exact_match])
    assert experiment.score_names == ["mentions_country", "contains"]
    assert rescored.score_names == ["exact_match"]
    run_sync(bus.stop())


@pytest.mark.timeout(120)
async def test_a_failed_prompt_is_an_error_not_a_score(tmp_path: Path) -> None:
    provider = ScriptedProvider(["Paris", ValueError("the model fell over"), "Lima", "Nairobi"])
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, provider=provider, retries=None)
        experiment = await arun_experiment(
            CAPITALS,
            "{country}",
            scorers=[exact_match],
            expected="capital",
            concurrency=1,
            engine=engine,
            progress=False,
        )
    results = experiment.results.set_index("row")
    assert "the model fell over" in str(results.loc["jp", "error"])
    assert math.isnan(results.loc["jp", "score.exact_match"])
    summary = experiment.summary().loc["default"]
    assert summary["errors"] == 0.25
    assert summary["score.exact_match"] == 1.0  # of the three outputs there are


@pytest.mark.timeout(120)
async def _scripted_exact_match(
    tmp_path: Path, data: pd.DataFrame, replies: list[str]
) -> Experiment:
    """``data``'s ``q`` column asked of a script answering ``replies``, scored against ``label``."""
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, provider=ScriptedProvider(replies))
        return await arun_experiment(
            data,
            "{q}",
            scorers=[exact_match],
            expected="label",
            engine=engine,
            progress=False,
            concurrency=1,
        )


async def test_a_second_scripted_experiment_gets_its_own_replies_not_the_first_ones_cached(
    tmp_path: Path,
) -> None:
    data = pd.DataFrame({"q": ["a", "b"], "label": ["yes", "no"]})
    outputs = []
    for replies in (["yes", "no"], ["WRONG", "WRONG"]):
        experiment = await _scripted_exact_match(tmp_path, data, replies)
        outputs.append(list(experiment.results["output"]))
        assert not experiment.results["cached"].any()
    assert outputs == [["yes", "no"], ["WRONG", "WRONG"]]


@pytest.mark.timeout(120)
async def test_compare_counts_and_says_the_rows_left_out_and_lists_a_variant_that_all_failed(
    tmp_path: Path,
) -> None:
    down = ValueError("the model fell over")
    right = ["Paris", "Tokyo", "Lima", "Nairobi"]
    provider = ScriptedProvider([*right, "Paris", down, "Lima", "Nairobi", *[down] * 4])
    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, provider=provider, retries=None)
        experiment = await arun_experiment(
            CAPITALS,
            "{country}",
            variants={"good": {}, "some": {}, "broken": {}},
            scorers=[exact_match],
            expected="capital",
            concurrency=1,
            engine=engine,
            progress=False,
        )
    comparison = experiment.compare("good")
    totals = comparison.totals
    assert list(totals.columns) == ["wins", "losses", "ties", "skipped", "mean_diff"]
    assert totals.loc[("some", "exact_match"), "ties"] == 3
    assert totals.loc[("some", "exact_match"), "skipped"] == 1
    assert totals.loc[
        ("broken", "exact_match"), ["wins", "losses", "ties", "skipped"]
    ].tolist() == [
        0,
        0,
        0,
        4,
    ]
    assert math.isnan(totals.loc[("broken", "exact_match"), "mean_diff"])
    assert "5 comparisons of a row left out (column 'skipped')" in repr(comparison)
    assert "5 comparisons of a row left out" in comparison._repr_html_()


@pytest.mark.timeout(120)
async def test_an_infinite_score_is_a_scorer_error_not_a_mean_of_infinity(tmp_path: Path) -> None:
    def endless(output: Any, expected: Any, row: Any) -> float:
        return (
            -math.inf
            if row["country"] == "Peru"
            else math.inf
            if row["country"] == "Kenya"
            else 1.0
        )

    async with quiet_bus(tmp_path) as bus:
        engine = LLMEngine(bus, model="offline")
        experiment = await arun_experiment(
            CAPITALS, "{country}", scorers=[endless], engine=engine, progress=False
        )
    results = experiment.results.set_index("row")
    assert math.isnan(results.loc["pe", "score.endless"])
    assert math.isnan(results.loc["ke", "score.endless"])
    assert "endless: ValueError: a scorer must return a finite number" in str(
        results.loc["ke", "scorer_errors"]
    )
    assert experiment.summary().loc["default", "score.endless"] == 1.0


def test_exact_match_and_contains_do_not_score_a_missing_expected_value() -> None:
    row = pd.Series({"q": "x"})
    for scorer in (exact_match, contains):
        assert math.isnan(scorer("", None, row))
        assert math.isnan(scorer("anything", math.nan, row))
        assert scorer("yes", "yes", row) is True


@pytest.mark.timeout(120)
async def test_rows_with_no_expected_value_are_left_out_of_exact_matchs_pass_rate(
    tmp_path: Path,
) -> None:
    data = pd.DataFrame({"q": ["a", "b"], "label": ["yes", None]})
    experiment = await _scripted_exact_match(tmp_path, data, ["yes", "no"])
    assert math.isnan(experiment.results["score.exact_match"].iloc[1])
    summary = experiment.summary().loc["default"]
    assert summary["score.exact_match"] == 1.0
    assert summary["score.exact_match.low"] == pytest.approx(0.2065, abs=1e-4)  # Wilson, 1 of 1


@pytest.mark.parametrize("name", ["", "  ", None])
def test_a_variant_with_no_name_is_refused_before_anything_is_sent(name: Any) -> None:
    import asyncio

    with pytest.raises(ConfigurationError, match="give each variant a name of its own"):
        asyncio.run(
            arun_experiment(
                CAPITALS, "{country}", variants={name: {"model": "offline"}}, bus=MessageBus()
            )
        )


@pytest.mark.parametrize(
    ("prompt", "variants"),
    [("", None), (" ", None), ("{country}", {"a": {"prompt": ""}}), ("", {"a": {}})],
)
def test_an_empty_prompt_template_is_refused_before_anything_is_sent(
    prompt: str, variants: Any
) -> None:
    import asyncio

    with pytest.raises(ConfigurationError, match="An empty prompt template"):
        asyncio.run(arun_experiment(CAPITALS, prompt, variants=variants, bus=MessageBus()))
