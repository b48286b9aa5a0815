"""A folder with no log is one error from every reader; a message read twice counts once."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from llmgine.__main__ import main
from llmgine.analysis import (
    LogReadWarning,
    commands_frame,
    llm_calls_frame,
    load_events,
    metrics_frame,
    query,
    spans_frame,
    summarize,
    traces_frame,
)
from llmgine.errors import LogSourceError

READERS: dict[str, Callable[[Any], Any]] = {
    "load_events": load_events,
    "commands_frame": commands_frame,
    "llm_calls_frame": llm_calls_frame,
    "metrics_frame": metrics_frame,
    "spans_frame": spans_frame,
    "traces_frame": traces_frame,
    "query": lambda source: query(source, "SELECT count(*) AS n FROM events"),
    "summarize": summarize,
}


@pytest.mark.parametrize("reader", READERS)
def test_a_folder_of_log_folders_is_one_clear_error_from_every_reader(
    reader: str, log_path: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    for day in ("monday", "tuesday"):
        (runs / day).mkdir(parents=True)
        shutil.copy(log_path, runs / day / "run.jsonl")
    message = (
        f"{runs} holds no log: no .jsonl file in it, and its folders are not read; "
        f"give one of them: {runs / 'monday'}, {runs / 'tuesday'}"
    )
    with pytest.raises(LogSourceError) as raised:
        READERS[reader](runs)
    assert str(raised.value) == message
    with pytest.raises(LogSourceError) as raised:
        READERS[reader]([runs / "monday", runs])
    assert str(raised.value) == message


@pytest.mark.parametrize("reader", READERS)
def test_an_empty_folder_is_one_clear_error_from_every_reader(reader: str, tmp_path: Path) -> None:
    with pytest.raises(LogSourceError) as raised:
        READERS[reader](tmp_path)
    assert str(raised.value) == (
        f"{tmp_path} holds no log: no .jsonl file in it; give a .jsonl log or a directory of them."
    )


def test_the_command_line_and_the_library_say_the_same_of_a_folder_of_folders(
    log_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "runs" / "monday").mkdir(parents=True)
    shutil.copy(log_path, tmp_path / "runs" / "monday" / "run.jsonl")
    with pytest.raises(LogSourceError) as raised:
        load_events(tmp_path / "runs")
    assert main(["log", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip() == f"llmgine: {raised.value}"


def _counts(source: Any) -> dict[str, Any]:
    df = load_events(source)
    return {
        "rows": len(df),
        "commands": len(df.llmgine.commands()),
        "spans": len(df.llmgine.spans()),
        "metrics": len(df.llmgine.metrics()),
        "llm_calls": len(df.llmgine.llm_calls()),
        "tokens in llm_calls": int(df.llmgine.llm_calls()["total_tokens"].sum()),
        "tokens in traces": int(df.llmgine.traces()["total_tokens"].sum()),
        "metrics from the path": len(metrics_frame(source)),
        "llm_calls from the path": len(llm_calls_frame(source)),
        "query llm_calls": int(query(source, "SELECT count(*) AS n FROM llm_calls")["n"][0]),
        "query metrics": int(query(source, "SELECT count(*) AS n FROM metrics")["n"][0]),
        "summary": summarize(source).splitlines()[2:],  # not the line naming the files
    }


def test_a_log_read_twice_counts_each_message_once_in_every_frame(
    log_path: Path, tmp_path: Path
) -> None:
    once = _counts(log_path)
    assert once["metrics"] > 0 and once["llm_calls"] > 0 and once["tokens in traces"] > 0
    copies = tmp_path / "copies"
    copies.mkdir()
    shutil.copy(log_path, copies / "run.jsonl")
    shutil.copy(log_path, copies / "run copy.jsonl")
    assert _counts(copies) == once  # a copy beside the log
    assert _counts([log_path, log_path]) == once  # a file listed twice
    assert _counts([log_path, copies / "run.jsonl"]) == once
    assert load_events([log_path, log_path]).attrs["sources"] == [str(log_path)]


def test_a_message_in_two_files_keeps_its_place_in_read_order(
    log_path: Path, tmp_path: Path
) -> None:
    lines = log_path.read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    (tmp_path / "first.jsonl").write_bytes(b"".join(lines[: half + 5]))
    (tmp_path / "second.jsonl").write_bytes(b"".join(lines[half:]))  # 5 lines overlap
    both = load_events([tmp_path / "first.jsonl", tmp_path / "second.jsonl"])
    assert both["id"].tolist() == load_events(log_path)["id"].tolist()


def test_frames_joined_by_hand_count_each_message_once(log_path: Path) -> None:
    df = load_events(log_path)
    twice = pd.concat([df, df], ignore_index=True)
    assert len(twice.llmgine.llm_calls()) == len(df.llmgine.llm_calls())
    assert len(twice.llmgine.metrics()) == len(df.llmgine.metrics())


def test_the_skipped_lines_warning_names_only_the_files_that_had_them(
    log_path: Path, tmp_path: Path
) -> None:
    text = log_path.read_bytes()
    lines = text.splitlines(keepends=True)
    (tmp_path / "a_good.jsonl").write_bytes(b"".join(lines[:5]))
    (tmp_path / "b_torn.jsonl").write_bytes(b"".join(lines[5:10]) + lines[10][:40])
    (tmp_path / "c_good.jsonl").write_bytes(b"".join(lines[11:15]))
    files = [tmp_path / f"{name}.jsonl" for name in ("a_good", "b_torn", "c_good")]
    with pytest.warns(LogReadWarning) as caught:
        df = load_events(files)
    assert [str(w.message) for w in caught] == [
        f"1 unreadable line(s) skipped in {tmp_path / 'b_torn.jsonl'}"
    ]
    assert len(df) == 14
    (tmp_path / "d_bad.jsonl").write_bytes(b"nope\n" + lines[16] + b"{broken\n")
    with pytest.warns(LogReadWarning) as caught:
        load_events([*files, tmp_path / "d_bad.jsonl"])
    assert [str(w.message) for w in caught] == [
        f"3 unreadable line(s) skipped: 1 in {tmp_path / 'b_torn.jsonl'}, "
        f"2 in {tmp_path / 'd_bad.jsonl'}"
    ]
