"""query(): DuckDB SQL over the JSONL files, with views shaped like the frames."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from llmgine.analysis import (
    QueryError,
    commands_frame,
    events_frame,
    llm_calls_frame,
    load_events,
    metrics_frame,
    query,
    spans_frame,
    traces_frame,
)


def test_views_have_the_columns_and_rows_of_the_frames(log_path: Path) -> None:
    df = load_events(log_path)
    pairs = {
        "events": df,
        "metrics": metrics_frame(df),
        "commands": commands_frame(df),
        "llm_calls": llm_calls_frame(df),
        "spans": spans_frame(df).reset_index(),
        "traces": traces_frame(df).reset_index(),
    }
    for view, frame in pairs.items():
        result = query(log_path, f"SELECT * FROM {view}")
        assert list(result.columns) == list(frame.columns), view
        assert len(result) == len(frame), view


def test_sql_returns_only_the_result(log_path: Path) -> None:
    tokens = query(
        log_path,
        "SELECT model, sum(total_tokens) AS tokens, count(*) AS calls "
        "FROM llm_calls GROUP BY model",
    )
    assert tokens.to_dict("records") == [{"model": "m-1", "tokens": 275, "calls": 3}]
    failed = query(
        log_path,
        "SELECT command_type, error FROM commands WHERE NOT success",
    )
    assert failed.to_dict("records") == [
        {"command_type": "StepCommand", "error": "step 2 always fails"}
    ]
    spans = query(
        log_path,
        'SELECT sum("attributes.gen_ai.usage.input_tokens") AS n FROM spans '
        "WHERE span_kind = 'LLM'",
    )
    assert spans["n"].iloc[0] == 257


def test_filters_reach_every_view(log_path: Path) -> None:
    df = load_events(log_path)
    middle = df["timestamp"].sort_values().iloc[len(df) // 2]
    later = query(log_path, "SELECT count(*) AS n FROM events", since=middle)
    assert later["n"].iloc[0] == (df["timestamp"] >= middle).sum()
    earlier = query(log_path, "SELECT count(*) AS n FROM events", until=middle)
    assert earlier["n"].iloc[0] == (df["timestamp"] < middle).sum()
    only = query(log_path, "SELECT DISTINCT type FROM events", types=["MetricEvent"])
    assert list(only["type"]) == ["MetricEvent"]


def test_frames_read_files_with_filters_pushed_down(log_path: Path) -> None:
    df = load_events(log_path)
    middle = df["timestamp"].sort_values().iloc[len(df) // 2]
    for frame in (commands_frame, llm_calls_frame, metrics_frame, spans_frame, traces_frame):
        from_file = frame(log_path)
        from_frame = frame(df)
        assert len(from_file) == len(from_frame), frame.__name__
        pd.testing.assert_frame_equal(from_file, from_frame, check_dtype=False)
        limited = frame(log_path, since=middle)
        assert len(limited) == len(frame(df[df["timestamp"] >= middle])), frame.__name__
    tools = events_frame(log_path, "ToolResultEvent", until=middle)
    assert len(tools) == len(events_frame(df[df["timestamp"] < middle], "ToolResultEvent"))


def test_bad_sql_is_one_clear_error(log_path: Path) -> None:
    with pytest.raises(QueryError, match="views: events, spans"):
        query(log_path, "SELECT nope FROM commands")
    with pytest.raises(QueryError, match="views"):
        query(log_path, "SELEKT 1")
    with pytest.raises(QueryError, match="needs SQL"):
        query(log_path, "   ")


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("SELECT CAST(type AS INTEGER) FROM events", "Conversion Error"),
        ("SELECT 'not a day'::DATE", "Conversion Error"),
        ("SELECT 100::TINYINT * 100::TINYINT", "Out of Range Error"),
        ("SELECT strptime(type, '%Y') FROM events", "Invalid Input Error"),
        ("SELECT regexp_matches(type, '(') FROM events", "Invalid Input Error"),
        ("SELECT error('my own message')", "my own message"),
        (
            "CREATE TABLE t (a INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (1)",
            "Constraint Error",
        ),
    ],
)
def test_data_errors_of_the_sql_are_query_errors(log_path: Path, sql: str, says: str) -> None:
    with pytest.raises(QueryError, match=says) as caught:
        query(log_path, sql)
    assert "\n" not in str(caught.value)  # DuckDB's first line, not its whole report
    assert caught.value.__cause__ is None


def test_a_file_named_in_the_sql_is_not_blamed_on_the_log(log_path: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such.csv"
    with pytest.raises(QueryError, match=r"no-such\.csv") as caught:
        query(log_path, f"SELECT * FROM read_csv('{missing}')")
    assert str(log_path) not in str(caught.value)


def test_a_directory_of_logs_is_one_database(log_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    lines = log_path.read_text().splitlines(keepends=True)
    (folder / "a.jsonl").write_text("".join(lines[:20]))
    (folder / "b.jsonl").write_text("".join(lines[20:]) + "garbage\n")
    n = query(folder, "SELECT count(*) AS n FROM events")["n"].iloc[0]
    assert n == len(lines)


def test_an_empty_log_gives_empty_views(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert query(empty, "SELECT count(*) AS n FROM commands")["n"].iloc[0] == 0
    assert query(tmp_path, "SELECT * FROM spans").empty
    assert json.dumps(list(query(empty, "SELECT * FROM llm_calls").columns))
