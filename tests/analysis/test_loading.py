"""load_events: envelope columns, sources, filters, damaged logs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from llmgine import ConfigurationError
from llmgine.analysis import ENVELOPE_COLUMNS, LogReadWarning, load_events
from llmgine.bus import MessageBus
from llmgine.errors import LogSourceError
from llmgine.messages import Event

LINES = 48  # see conftest: the pipeline 22, metrics 2, the tool chat 16, the plain chat 8


def test_one_row_per_line_with_the_envelope(log_path: Path) -> None:
    df = load_events(log_path)
    assert list(df.columns) == ENVELOPE_COLUMNS
    assert len(df) == LINES
    assert df.attrs["skipped_lines"] == 0
    assert df.attrs["sources"] == [str(log_path)]
    assert str(df["timestamp"].dtype) == "datetime64[us, UTC]"
    # Rows keep the log's order (the order things happened), not the messages' creation times.
    assert list(df["type"][:2]) == ["TraceEvent", "PipelineCommand"]
    raw = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert list(df["id"]) == [line["id"] for line in raw]
    assert json.loads(df["data"].iloc[1]) == raw[1]["data"]
    assert df["kind"].value_counts().to_dict() == {"event": 41, "command": 7}
    assert (df["type"] == "TraceEvent").sum() == 24


def test_filters_by_type_and_time(log_path: Path) -> None:
    df = load_events(log_path)
    from llmgine.llm import LLMResponseEvent

    only = load_events(log_path, types=[LLMResponseEvent, "MetricEvent"])
    assert set(only["type"]) == {"LLMResponseEvent", "MetricEvent"}
    assert len(only) == 3 + 5
    middle = df["timestamp"].iloc[20]
    since = load_events(log_path, since=middle)
    assert len(since) == (df["timestamp"] >= middle).sum()
    until = load_events(log_path, until=middle.to_pydatetime().replace(tzinfo=None))
    assert len(until) == (df["timestamp"] < middle).sum()
    assert len(since) + len(until) == LINES


def test_damaged_lines_are_skipped_counted_and_warned(log_path: Path, tmp_path: Path) -> None:
    text = log_path.read_text()
    lines = text.splitlines(keepends=True)
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text(
        lines[0]
        + "not json at all\n"
        + "\n"
        + "[1, 2]\n"
        + '{"kind": "event"}\n'
        + "".join(lines[1:])
        + lines[5][: len(lines[5]) // 2]  # truncated last line
    )
    with pytest.warns(LogReadWarning, match="4 unreadable line"):
        df = load_events(damaged)
    assert len(df) == LINES
    assert df.attrs["skipped_lines"] == 4  # the blank line is not a line of content


def test_empty_and_all_garbage_files_give_empty_frames(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    df = load_events(empty)
    assert df.empty
    assert list(df.columns) == ENVELOPE_COLUMNS
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("nope\n{broken\n")
    with pytest.warns(LogReadWarning, match="2 unreadable"):
        df = load_events(garbage)
    assert df.empty
    assert list(df.columns) == ENVELOPE_COLUMNS
    assert df.attrs["skipped_lines"] == 2


def test_heterogeneous_payloads_never_fail(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    rows = [{"value": 1}, {"value": "one"}, {"value": [1]}, {"value": {"deep": True}}, {}]
    with path.open("w") as out:
        for i, data in enumerate(rows):
            out.write(
                json.dumps(
                    {
                        "kind": "event",
                        "type": "ThingEvent",
                        "module": "m",
                        "id": f"id{i}",
                        "timestamp": "2026-01-01T00:00:00+00:00",
                        "session_id": "global",
                        "trace_id": None,
                        "span_id": None,
                        "metadata": {},
                        "data": data,
                    }
                )
                + "\n"
            )
    df = load_events(path)
    from llmgine.analysis import events_frame

    things = events_frame(df, "ThingEvent")
    assert list(things["value"]) == [1, "one", [1], {"deep": True}, None]


def test_a_directory_reads_every_log_oldest_first(log_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    lines = log_path.read_text().splitlines(keepends=True)
    (folder / "b.jsonl").write_text("".join(lines[:10]))
    (folder / "a.jsonl").write_text("".join(lines[10:]))
    now = time.time()
    os.utime(folder / "b.jsonl", (now - 100, now - 100))  # b is older
    (folder / "notes.txt").write_text("ignored")
    df = load_events(folder)
    assert len(df) == LINES
    assert df.attrs["sources"] == [str(folder / "b.jsonl"), str(folder / "a.jsonl")]
    assert len(load_events([folder / "a.jsonl"])) == LINES - 10


async def test_a_running_bus_is_a_source(tmp_path: Path) -> None:
    class PingedEvent(Event):
        n: int

    async with MessageBus(log_dir=tmp_path, enable_console_traces=False) as bus:
        for n in range(3):
            await bus.publish(PingedEvent(n=n))
        df = load_events(bus)  # no wait_for_events: load_events flushes what is written
        assert len(df) == 3
        assert bus.is_running
    with pytest.raises(ConfigurationError, match="writes no log"):
        load_events(MessageBus(log_dir=None))


def test_missing_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="No log at"):
        load_events(tmp_path / "nope.jsonl")
    with pytest.raises(ConfigurationError, match="No log file at"):
        load_events([tmp_path / "nope.jsonl"])
    with pytest.raises(TypeError, match="takes a path"):
        load_events(42)
    with pytest.raises(LogSourceError, match=r"holds no log: no \.jsonl file in it"):
        load_events(tmp_path)  # an empty directory


def test_progress_bar_is_shown_when_asked(
    log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    df = load_events(log_path, progress=True)
    assert len(df) == LINES
    assert "loading log" in capsys.readouterr().err
    load_events(log_path)  # small: silent
    assert capsys.readouterr().err == ""


def test_timestamps_are_utc_datetimes(log_path: Path) -> None:
    df = load_events(log_path)
    assert isinstance(df["timestamp"].iloc[0], pd.Timestamp)
    assert str(df["timestamp"].iloc[0].tz) == "UTC"


def _agreement(path: Path) -> tuple[list[str], int, list[str], int]:
    """(ids, skipped) as read_log sees the file, then as load_events does."""
    import warnings

    from llmgine.observability import read_log

    bad: list[int] = []
    read = [envelope.id for envelope in read_log(path, bad_lines=bad)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogReadWarning)
        frame = load_events(path)
    return read, len(bad), list(frame["id"]), int(frame.attrs["skipped_lines"])


def _envelope(n: int, data: str) -> str:
    return (
        f'{{"kind": "event", "type": "NoteEvent", "module": "app", "id": "id-{n}", '
        f'"timestamp": "2026-12-01T12:00:0{n}+00:00", "session_id": "global", '
        f'"trace_id": null, "span_id": null, "metadata": {{}}, "data": {data}}}\n'
    )


@pytest.mark.parametrize(
    ("case", "lines", "kept"),
    [
        ("a BOM before the first line", ["\ufeff" + _envelope(1, "{}"), _envelope(2, "{}")], 2),
        (
            "NaN and Infinity literals",
            [
                _envelope(1, '{"x": NaN}'),
                _envelope(2, '{"x": [1, Infinity]}'),
                _envelope(3, '{"x": -Infinity}'),
                _envelope(4, '{"text": "NaN, Infinity and [NaN] inside a string"}'),
            ],
            1,
        ),
        (
            "deep nesting",
            [
                _envelope(1, '{"x": ' + "[" * 1000 + "]" * 1000 + "}"),
                _envelope(2, '{"x": ' + "[" * 1022 + "]" * 1022 + "}"),  # 1024 in all: read
                _envelope(3, '{"x": ' + "[" * 1023 + "]" * 1023 + "}"),  # 1025: too deep
                _envelope(4, '{"x": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}"),
                _envelope(5, "{}"),
            ],
            3,
        ),
    ],
)
def test_read_log_and_load_events_agree(
    tmp_path: Path, case: str, lines: list[str], kept: int
) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    read, read_skipped, loaded, load_skipped = _agreement(path)
    assert read == loaded, case
    assert read_skipped == load_skipped, case
    assert len(read) == kept, case
    from llmgine.analysis import query

    assert query(path, "SELECT count(*) AS n FROM events")["n"].iloc[0] == kept, case
