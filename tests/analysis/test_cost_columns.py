"""Cost and cache hits in the log's frames and views: per call, per trace, through query()."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import uuid4

import pandas as pd
import pytest

from llmgine import MessageBus
from llmgine.analysis import llm_calls_frame, load_events, query, traces_frame
from llmgine.llm import LLMResponseEvent, Usage


def _response(model: str, cost: float | None, **fields: Any) -> LLMResponseEvent:
    return LLMResponseEvent(
        conversation_id=fields.pop("conversation_id", "c1"),
        prompt_id=uuid4(),
        content="ok",
        model=model,
        provider="openai",
        finish_reason="stop",
        usage=Usage(input_tokens=100, output_tokens=20, cost_usd=cost),
        latency_ms=12.0,
        cost_usd=cost,
        **fields,
    )


async def _llm_span(bus: MessageBus, cost: float | None, *, hit: bool = False) -> None:
    attributes: dict[str, Any] = {"gen_ai.request.model": "gpt-4o"}
    async with bus.span("prompt"), bus.span("chat gpt-4o", kind="LLM", **attributes) as span:
        span.set_attribute("gen_ai.usage.input_tokens", 100)
        span.set_attribute("gen_ai.usage.output_tokens", 20)
        if cost is not None:
            span.set_attribute("llmgine.cost_usd", cost)
        span.set_attribute("llmgine.cache.hit", hit)


async def _record(log_dir: Path) -> Path:
    bus = MessageBus(
        log_dir=log_dir,
        log_filename="cost.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
    )
    async with bus:
        await bus.publish(_response("gpt-4o", 0.00045))
        await bus.publish(_response("gpt-4o", 0.0, cached=True, cost_saved_usd=0.00045))
        await bus.publish(_response("mystery-model", None, conversation_id="c2"))
        await _llm_span(bus, 0.00045)  # a priced call
        await _llm_span(bus, 0.0, hit=True)  # a cache hit
        await _llm_span(bus, None)  # a model of unknown price
        async with bus.span("no llm here"):
            pass
    assert bus.log_path is not None
    return bus.log_path


@pytest.fixture
def cost_log(tmp_path: Path) -> Path:
    return asyncio.run(_record(tmp_path))


def test_each_llm_call_has_its_cost_and_whether_the_cache_answered(cost_log: Path) -> None:
    calls = llm_calls_frame(cost_log)
    assert list(calls["cost_usd"].astype(object).where(calls["cost_usd"].notna(), None)) == [
        0.00045,
        0.0,
        None,  # an unknown price stays unknown, never 0
    ]
    assert list(calls["cached"]) == [False, True, False]
    assert calls["cost_saved_usd"].iloc[1] == 0.00045
    assert pd.isna(calls["cost_saved_usd"].iloc[0])
    columns = list(calls.columns)
    assert columns.index("cost_usd") == columns.index("usage_estimated") + 1
    assert columns[columns.index("cost_usd") : columns.index("cost_usd") + 3] == [
        "cost_usd",
        "cached",
        "cost_saved_usd",
    ]


def test_the_frame_and_the_query_view_agree_on_cost(cost_log: Path) -> None:
    by_model = query(
        cost_log,
        "SELECT model, sum(cost_usd) AS cost, count(*) FILTER (WHERE cached) AS hits "
        "FROM llm_calls GROUP BY model ORDER BY model",
    )
    assert list(by_model["model"]) == ["gpt-4o", "mystery-model"]
    assert by_model["cost"].iloc[0] == pytest.approx(0.00045)
    assert pd.isna(by_model["cost"].iloc[1])
    assert list(by_model["hits"]) == [1, 0]
    frame = llm_calls_frame(load_events(cost_log))  # the same SQL over a loaded frame
    assert frame["cost_usd"].sum() == pytest.approx(0.00045)


def test_a_trace_sums_its_llm_costs_and_counts_its_cache_hits(cost_log: Path) -> None:
    traces = traces_frame(cost_log)
    assert list(traces["root_name"]) == ["prompt", "prompt", "prompt", "no llm here"]
    cost = traces["cost_usd"].astype(object).where(traces["cost_usd"].notna(), None)
    # A trace with a call of unknown price has no total (not a total that is too low);
    # a trace without LLM calls cost nothing.
    assert list(cost) == [0.00045, 0.0, None, 0.0]
    assert list(traces["cached_calls"]) == [0, 1, 0, 0]
    viewed = query(cost_log, "SELECT cost_usd, cached_calls FROM traces")
    assert viewed["cached_calls"].tolist() == [0, 1, 0, 0]


def test_a_log_from_before_cost_reads_as_unknown_cost_and_no_cache(tmp_path: Path) -> None:
    old = tmp_path / "old.jsonl"
    old.write_text(
        '{"kind":"event","type":"LLMResponseEvent","module":"llmgine.llm.events",'
        '"id":"0b8f7c1e-1f0e-4a53-9a35-4c1c0f1c2d3e","timestamp":"2026-11-24T15:08:01Z",'
        '"session_id":"global","trace_id":null,"span_id":null,"metadata":{},'
        '"data":{"content":"Hello.","model":"gpt-4o","usage":{"input_tokens":3,'
        '"output_tokens":1}}}\n'
    )
    calls = llm_calls_frame(old)
    assert pd.isna(calls["cost_usd"].iloc[0])
    assert not calls["cached"].iloc[0]


def test_llmgine_log_sums_up_cost_by_model(
    cost_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmgine.__main__ import main

    assert main(["log", str(cost_log)]) == 0
    out = capsys.readouterr().out
    assert (
        "LLM calls: 3; tokens in 300, out 60; cost $0.00045 + 1 call of unknown price, "
        "1 cached (saved $0.00045)"
    ) in out
    assert (
        "openai:gpt-4o  2 calls, 200 in, 40 out, $0.00045, 1 cached (saved $0.00045), "
        "latency p50 12.0 ms"
    ) in out
    assert "openai:mystery-model  1 calls, 100 in, 20 out, price unknown, latency" in out
