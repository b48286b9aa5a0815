"""The derived frames: exact counts and sums from a real recorded log."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from llmgine.analysis import (
    commands_frame,
    events_frame,
    llm_calls_frame,
    load_events,
    metrics_frame,
    spans_frame,
    traces_frame,
)


@pytest.fixture
def df(log_path: Path) -> pd.DataFrame:
    return load_events(log_path)


def test_events_frame_flattens_payloads(df: pd.DataFrame) -> None:
    responses = events_frame(df, "LLMResponseEvent")
    assert len(responses) == 3
    for column in (
        "timestamp",
        "id",
        "session_id",
        "trace_id",
        "span_id",
        "content",
        "model",
        "usage.input_tokens",
        "usage.output_tokens",
        "latency_ms",
        "tool_calls",
    ):
        assert column in responses.columns
    assert responses["usage.input_tokens"].sum() == 257
    assert list(responses["content"].fillna("")) == ["", "42", "hi"]
    assert responses["tool_calls"].iloc[0][0]["name"] == "double"
    assert events_frame(df, "NoSuchEvent").empty


def test_metrics_frame_is_long_format(df: pd.DataFrame) -> None:
    metrics = metrics_frame(df)
    assert list(metrics.columns) == [
        "timestamp",
        "name",
        "value",
        "unit",
        "tags",
        "session_id",
        "trace_id",
        "event_id",
    ]
    assert len(metrics) == 12  # 3 by hand, 3 per LLM call
    rows = metrics[metrics["name"] == "rows"]
    assert rows["value"].sum() == 10
    assert set(rows["unit"]) == {"rows"}
    assert metrics.loc[metrics["name"] == "queue", "tags"].iloc[0] == {"q": "a"}
    assert metrics.loc[metrics["name"] == "gen_ai.usage.input_tokens", "value"].sum() == 257
    assert metrics["event_id"].nunique() == 5


def test_spans_frame_has_phoenix_columns_and_nesting(df: pd.DataFrame) -> None:
    spans = spans_frame(df)
    assert spans.index.name == "context.span_id"
    assert list(spans.columns[:9]) == [
        "context.trace_id",
        "parent_id",
        "name",
        "span_kind",
        "start_time",
        "end_time",
        "status_code",
        "status_message",
        "duration_ms",
    ]
    assert len(spans) == 12
    assert spans["context.trace_id"].nunique() == 3
    assert spans["status_code"].value_counts().to_dict() == {"OK": 11, "ERROR": 1}
    failed = spans[spans["status_code"] == "ERROR"].iloc[0]
    assert (failed["name"], failed["status_message"]) == (
        "StepCommand",
        "ValueError: step 2 always fails",
    )
    load = spans[spans["name"] == "load"].iloc[0]
    steps = spans[spans["name"] == "StepCommand"]
    assert set(steps["parent_id"]) == {load.name}
    assert load["attributes.rows"] == 4
    llm = spans[spans["span_kind"] == "LLM"]
    assert list(llm["attributes.gen_ai.usage.input_tokens"]) == [100, 150, 7]
    assert list(llm["attributes.gen_ai.response.finish_reasons"]) == [
        ["tool_calls"],
        ["stop"],
        ["stop"],
    ]
    tool = spans[spans["span_kind"] == "TOOL"].iloc[0]
    assert tool["attributes.gen_ai.tool.name"] == "double"
    assert tool["attributes.gen_ai.tool.call.id"] == "c1"
    assert (spans["end_time"] >= spans["start_time"]).all()


def test_a_span_that_never_ended_is_kept_unset(df: pd.DataFrame) -> None:
    started_only = df[~((df["type"] == "TraceEvent") & df["data"].str.contains('"end_time":"20'))]
    spans = spans_frame(started_only)
    assert len(spans) == 12
    assert set(spans["status_code"]) == {"UNSET"}
    assert spans["end_time"].isna().all()
    assert spans["duration_ms"].isna().all()


def test_traces_frame_one_row_per_trace(df: pd.DataFrame) -> None:
    traces = traces_frame(df)
    assert traces.index.name == "trace_id"
    assert list(traces.columns) == [
        "root_name",
        "start_time",
        "end_time",
        "duration_ms",
        "span_count",
        "status",
        "error_count",
        "total_tokens",
        "cost_usd",
        "cached_calls",
    ]
    assert list(traces["root_name"]) == ["PipelineCommand", "PromptCommand", "PromptCommand"]
    assert list(traces["span_count"]) == [6, 4, 2]
    assert list(traces["error_count"]) == [1, 0, 0]
    assert list(traces["status"]) == ["OK", "OK", "OK"]
    assert list(traces["total_tokens"]) == [0, 265, 10]


def test_commands_frame_joins_results(df: pd.DataFrame) -> None:
    commands = commands_frame(df)
    assert list(commands.columns) == [
        "command_type",
        "command_id",
        "start",
        "duration_ms",
        "success",
        "error_type",
        "error",
        "session_id",
        "trace_id",
        "span_id",
    ]
    assert commands["command_type"].value_counts().to_dict() == {
        "StepCommand": 4,
        "PromptCommand": 2,
        "PipelineCommand": 1,
    }
    assert commands["success"].sum() == 6
    failed = commands[~commands["success"].astype(bool)].iloc[0]
    assert (failed["error_type"], failed["error"]) == ("ValueError", "step 2 always fails")
    assert commands["duration_ms"].notna().all()


def test_a_command_without_a_result_has_no_success(df: pd.DataFrame) -> None:
    no_results = df[~df["type"].isin(["CommandResultEvent", "CommandErrorEvent"])]
    commands = commands_frame(no_results)
    assert len(commands) == 7
    assert commands["success"].isna().all()


def test_llm_calls_frame(df: pd.DataFrame) -> None:
    calls = llm_calls_frame(df)
    assert list(calls.columns) == [
        "timestamp",
        "model",
        "provider",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "usage_estimated",
        "cost_usd",
        "cached",
        "cost_saved_usd",
        "latency_ms",
        "finish_reason",
        "conversation_id",
        "tool_calls",
        "content",
        "prompt_id",
        "session_id",
        "trace_id",
        "event_id",
    ]
    assert calls["total_tokens"].sum() == 275
    assert list(calls["usage_estimated"]) == [False, False, False]  # counted, not estimated
    assert list(calls["tool_calls"]) == [1, 0, 0]
    assert list(calls["conversation_id"]) == ["default", "default", "other"]
    assert set(calls["provider"]) == {"scripted"}


def test_frames_of_an_empty_log_are_empty_with_columns(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    df = load_events(empty)
    assert spans_frame(df).empty
    assert "status_code" in spans_frame(df).columns
    assert metrics_frame(df).empty
    assert "name" in metrics_frame(df).columns
    assert commands_frame(df).empty
    assert llm_calls_frame(df).empty
    assert traces_frame(df).empty


def test_frames_reject_frames_that_are_not_logs() -> None:
    with pytest.raises(ValueError, match="needs a frame from load_events"):
        spans_frame(pd.DataFrame({"a": [1]}))
