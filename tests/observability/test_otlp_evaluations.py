"""An experiment's scores reach OTLP: ``gen_ai.evaluation.result`` events in each row's trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmgine.bus import MessageBus
from llmgine.evals import Experiment, arun_experiment, contains
from llmgine.llm import LLMEngine
from llmgine.observability.otlp import OTLPExporter

DATA = pd.DataFrame({"city": ["Paris", "Lima"], "country": ["France", "Peru"]})


def says_city(output: Any, expected: Any, row: Any) -> bool:
    return str(row["city"]) in str(output)


def broken(output: Any, expected: Any, row: Any) -> float:
    raise KeyError("nothing to score")


async def run(tmp_path: Path, *sinks: Any) -> tuple[Experiment, Path]:
    bus = MessageBus(
        log_dir=tmp_path,
        log_filename="run.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
        sinks=list(sinks),
    )
    async with bus:
        engine = LLMEngine(bus, model="offline", cache=tmp_path / "calls.sqlite3")
        experiment = await arun_experiment(
            DATA,
            "Where is {city}?",
            variants={"a": {}, "b": {"prompt": "{city} is in which country?"}},
            scorers=[says_city, contains, broken],
            expected="country",
            engine=engine,
            name="cities",
            progress=False,
        )
    assert bus.log_path is not None
    return experiment, bus.log_path


def check_evaluations(spans: list[ReadableSpan], experiment: Experiment) -> None:
    evaluated = [s for s in spans if s.name.startswith("evaluate ")]
    assert sorted(s.name for s in evaluated) == ["evaluate a"] * 2 + ["evaluate b"] * 2
    traces = {f"{s.context.trace_id:032x}" for s in evaluated if s.context is not None}
    assert traces == set(experiment.results["trace_id"])  # each in its row's trace
    for span in evaluated:
        assert (span.attributes or {})["openinference.span.kind"] == "EVALUATOR"
        events = {(e.attributes or {})["gen_ai.evaluation.name"]: e for e in span.events}
        assert set(events) == {"says_city", "contains", "broken"}
        assert all(e.name == "gen_ai.evaluation.result" for e in span.events)
        city = dict(events["says_city"].attributes or {})
        assert city["gen_ai.evaluation.score.value"] == 1.0
        assert city["gen_ai.evaluation.score.label"] == "pass"
        assert city["llmgine.evaluation.experiment"] == "cities"
        failed = dict(events["broken"].attributes or {})
        assert "gen_ai.evaluation.score.value" not in failed
        assert failed["gen_ai.evaluation.explanation"] == "KeyError: 'nothing to score'"
        assert failed["error.type"] == "scorer_error"


@pytest.mark.timeout(120)
async def test_scores_are_evaluation_events_of_a_span_in_each_rows_trace(tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    experiment, _ = await run(tmp_path, OTLPExporter("http://127.0.0.1:1", span_exporter=memory))
    check_evaluations(list(memory.get_finished_spans()), experiment)


@pytest.mark.timeout(120)
async def test_a_recorded_experiment_replays_its_evaluations(tmp_path: Path) -> None:
    experiment, log = await run(tmp_path)
    memory = InMemorySpanExporter()
    exporter = OTLPExporter("http://127.0.0.1:1", span_exporter=memory)
    exporter.export_lines(log.read_bytes().splitlines())
    exporter.close()
    check_evaluations(list(memory.get_finished_spans()), experiment)


@pytest.mark.timeout(120)
async def test_evaluation_spans_reach_an_otlp_endpoint(tmp_path: Path, collector: Any) -> None:
    exporter = OTLPExporter(collector.url)
    await run(tmp_path, exporter)  # the bus's stop closes the exporter: it sends what it holds
    assert collector.wait_for(1)
    assert sorted(n for n in collector.names if n.startswith("evaluate ")) == [
        "evaluate a",
        "evaluate a",
        "evaluate b",
        "evaluate b",
    ]


@pytest.mark.timeout(1500)  # the first run installs arize-phoenix into a cached virtualenv
async def test_phoenix_shows_each_score_on_its_evaluation_span(
    phoenix: Any, tmp_path: Path
) -> None:
    from llmgine.analysis import load_events, spans_frame

    exporter = OTLPExporter(phoenix.url, project_name="experiment")
    experiment, log = await run(tmp_path, exporter)
    expected = len(spans_frame(load_events(log)))
    rows = phoenix.spans("experiment", expected=expected)
    evaluated = [r for r in rows if str(r["name"]).startswith("evaluate ")]
    assert len(evaluated) == 4
    assert {r["context.trace_id"] for r in evaluated} == set(experiment.results["trace_id"])
    for row in evaluated:
        events = row["events"]
        assert isinstance(events, list)
        assert [e["name"] for e in events] == ["gen_ai.evaluation.result"] * 3
        names = {e["attributes"]["gen_ai.evaluation.name"] for e in events}
        assert names == {"says_city", "contains", "broken"}
        city = next(e for e in events if e["attributes"]["gen_ai.evaluation.name"] == "says_city")
        assert city["attributes"]["gen_ai.evaluation.score.value"] == 1.0
