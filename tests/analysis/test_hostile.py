"""Hostile logs: odd attribute keys, odd directory entries, odd sources and times.

Each failure here was a crash (a DuckDB binder error, a pandas AttributeError, a
30-line traceback from the command line) before; now the analysis works, or says in
one line what is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from llmgine.__main__ import main
from llmgine.analysis import (
    LogReadWarning,
    events_frame,
    load_events,
    query,
    spans_frame,
    traces_frame,
)
from llmgine.bus import MessageBus
from llmgine.errors import LogSourceError
from llmgine.messages import Event


class ProfileEvent(Event):
    profile: dict[str, object]


async def _hostile_log(log_dir: Path) -> Path:
    bus = MessageBus(
        log_dir=log_dir,
        log_filename="hostile.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
    )
    async with bus:
        async with bus.span("dotted") as span:
            span.set_attribute("user.id", 1)
        async with bus.span("nested") as span:
            span.set_attribute("user", {"id": 2})
        async with bus.span("empty key") as span:
            span.set_attribute("", "nameless")
            span.set_attribute("deep", {"": {"x": 1}, "ok": 5})
        async with bus.span("case") as span:
            span.set_attribute("Mode", "upper")
            span.set_attribute("mode", "lower")
        async with bus.span("quotes") as span:
            span.set_attribute('it\'s "quoted"', 7)
        await bus.publish(ProfileEvent(profile={"user.id": 1}))
        await bus.publish(ProfileEvent(profile={"user": {"id": 2}, "": 0, "A": 1, "a": 2}))
    assert bus.log_path is not None
    return bus.log_path


@pytest.fixture
async def hostile(tmp_path: Path) -> Path:
    return await _hostile_log(tmp_path)


def test_colliding_and_empty_attribute_keys_make_columns_not_crashes(hostile: Path) -> None:
    spans = spans_frame(load_events(hostile)).set_index("name")
    assert spans.loc["dotted", "attributes.user.id"] == 1
    assert spans.loc["nested", "attributes.user.id"] == 2  # one column for both spellings
    assert list(spans.columns).count("attributes.user.id") == 1
    assert spans.loc["empty key", "attributes."] == "nameless"
    assert spans.loc["empty key", "attributes.deep."] == {"x": 1}
    assert spans.loc["empty key", "attributes.deep.ok"] == 5
    assert spans.loc["case", "attributes.Mode"] == "upper"
    assert spans.loc["case", "attributes.mode"] == "lower"
    assert spans.loc["quotes", 'attributes.it\'s "quoted"'] == 7
    assert len(traces_frame(hostile)) == 5


def test_colliding_payload_fields_in_events_frame(hostile: Path) -> None:
    profiles = events_frame(load_events(hostile), "ProfileEvent")
    assert list(profiles["profile.user.id"]) == [1, 2]
    assert list(profiles["profile."]) == [None, 0]
    assert list(profiles["profile.A"]) == [None, 1]
    assert list(profiles["profile.a"]) == [None, 2]


def test_query_over_hostile_attributes(hostile: Path) -> None:
    spans = query(hostile, 'SELECT name, "attributes.user.id" AS uid FROM spans ORDER BY name')
    rows = dict(zip(spans["name"], spans["uid"], strict=True))
    assert (rows["dotted"], rows["nested"]) == ("1", "2")  # merged: JSON, as text
    cased = query(hostile, 'SELECT "attributes.Mode", "attributes.mode#2" FROM spans')
    assert cased.dropna().values.tolist() == [['"upper"', '"lower"']]  # JSON leaves stay JSON


def test_a_subdirectory_named_like_a_log_is_not_a_log(hostile: Path, tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").mkdir()
    (tmp_path / "x.jsonl" / "inner.jsonl").write_text("{}\n")
    df = load_events(tmp_path)
    assert df.attrs["sources"] == [str(hostile)]
    assert query(tmp_path, "SELECT count(*) AS n FROM events")["n"].iloc[0] == len(df)


def test_file_names_with_glob_characters_are_names(hostile: Path, tmp_path: Path) -> None:
    for name in ("b*.jsonl", "a[1].jsonl", "q?.jsonl"):
        (tmp_path / name).write_bytes(hostile.read_bytes())
    (tmp_path / "bx.jsonl").write_bytes(hostile.read_bytes())  # what b*.jsonl would also match
    one = len(load_events(hostile))
    assert len(load_events(tmp_path / "b*.jsonl")) == one
    assert len(load_events(tmp_path / "a[1].jsonl")) == one
    every = load_events(tmp_path)
    assert len(every.attrs["sources"]) == 5  # each file read once, none matched twice
    assert len(every) == one  # five copies of one log are its messages once
    assert query(tmp_path, "SELECT count(*) AS n FROM events")["n"].iloc[0] == one


def test_a_dangling_symlink_is_skipped_in_a_directory_and_named_alone(
    hostile: Path, tmp_path: Path
) -> None:
    link = tmp_path / "gone.jsonl"
    link.symlink_to(tmp_path / "nowhere.jsonl")
    with pytest.warns(LogReadWarning, match=r"skipped 1 entry .*gone\.jsonl"):
        df = load_events(tmp_path)
    assert df.attrs["sources"] == [str(hostile)]
    with pytest.raises(LogSourceError, match="broken symbolic link"):
        load_events(link)


@pytest.mark.parametrize("source", [42, None, b"logs/x.jsonl", {"a": 1}, [3.5], "", "a\x00b"])
def test_a_source_that_is_not_a_path_is_one_clear_error(source: object) -> None:
    with pytest.raises(LogSourceError, match=r"not a log path|load_events takes|No log at"):
        load_events(source)
    with pytest.raises(LogSourceError):
        query(source, "SELECT 1")


def test_a_frame_given_to_load_events_says_what_to_do(hostile: Path) -> None:
    with pytest.raises(LogSourceError, match="already a DataFrame"):
        load_events(load_events(hostile))


@pytest.mark.parametrize("since", ["garbage", "", "2026-13-45", 3 + 4j])
def test_a_time_that_is_not_a_time_is_one_clear_error(hostile: Path, since: object) -> None:
    with pytest.raises(LogSourceError, match=r"since=.* is not a time"):
        load_events(hostile, since=since)  # type: ignore[arg-type]
    with pytest.raises(LogSourceError, match=r"since=.* is not a time"):
        spans_frame(hostile, since=since)  # type: ignore[arg-type]
    with pytest.raises(LogSourceError, match=r"until=.* is not a time"):
        query(hostile, "SELECT 1", until=since)  # type: ignore[arg-type]


def test_an_unreadable_file_is_one_clear_error(hostile: Path) -> None:
    if os.geteuid() == 0:
        # root reads everything: make the file unreadable another way, a directory in a list
        with pytest.raises(LogSourceError, match="No log file at"):
            load_events([hostile.parent / "missing.jsonl"])
        return
    hostile.chmod(0)
    with pytest.raises(LogSourceError, match="Cannot read"):
        query(hostile, "SELECT count(*) FROM events")


def test_the_command_line_prints_one_line_not_a_traceback(
    hostile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.jsonl").mkdir()
    (tmp_path / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    assert main(["log", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "lines from" in captured.out
    assert captured.err.count("\n") == 1
    assert "gone.jsonl" in captured.err
    assert main(["log", str(tmp_path / "gone.jsonl")]) == 2
    assert main(["log", str(hostile), "--since", "garbage"]) == 2
    assert main(["log", str(tmp_path / "x.jsonl")]) == 2  # a directory holding no log
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    errors = [line for line in captured.err.splitlines() if line]
    assert errors == [
        f"llmgine: {tmp_path / 'gone.jsonl'} is a broken symbolic link "
        f"(to {tmp_path / 'nowhere.jsonl'}).",
        errors[1],
        f"llmgine: {tmp_path / 'x.jsonl'} holds no log: no .jsonl file in it; "
        "give a .jsonl log or a directory of them.",
    ]
    assert errors[1].startswith("llmgine: since='garbage' is not a time")


def test_a_hand_edited_frame_skips_lines_that_are_not_json(hostile: Path) -> None:
    df = load_events(hostile)
    whole = spans_frame(df)
    first_span_line = int((df["type"] == "TraceEvent").idxmax())
    df.loc[first_span_line, "data"] = "{not json"
    spans = spans_frame(df)
    assert len(spans) == len(whole)  # the span's end line still describes it
    assert isinstance(query(df, "SELECT count(*) AS n FROM events"), pd.DataFrame)
    assert query(df, "SELECT count(*) AS n FROM events")["n"].iloc[0] == len(df) - 1
