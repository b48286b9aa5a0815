"""``replay:<folder>``: a folder holding one log replays it; any other folder says what to give."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmgine import ConfigurationError
from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, provider_for


async def record(folder: Path, name: str, prompt: str) -> str:
    """Record one session of the offline model in ``folder/name``; return its answer."""
    bus = MessageBus(
        log_dir=folder,
        log_filename=name,
        enable_console_traces=False,
        enable_console_metrics=False,
    )
    engine = LLMEngine(bus, model="offline")
    async with bus:
        return await engine.chat(prompt)


async def test_a_folder_holding_one_log_replays_that_log(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    recorded = await record(folder, "session.jsonl", "Name a colour.")
    engine = LLMEngine(MessageBus(log_dir=None), model=f"replay:{folder}")
    assert await engine.chat("Name a colour.") == recorded


async def test_a_folder_of_several_logs_names_them_and_the_newest_to_give(tmp_path: Path) -> None:
    await record(tmp_path, "old.jsonl", "Name a colour.")
    await record(tmp_path, "new.jsonl", "Name a fruit.")
    os.utime(tmp_path / "old.jsonl", (1_000_000, 1_000_000))
    with pytest.raises(ConfigurationError) as caught:
        provider_for(f"replay:{tmp_path}")
    message = str(caught.value)
    assert "holds 2 logs (new.jsonl, old.jsonl)" in message
    assert f'"replay:{tmp_path / "new.jsonl"}" (the newest)' in message
    assert "record one with a real model" not in message


def test_a_folder_with_no_log_in_it_says_to_give_the_log_file(tmp_path: Path) -> None:
    (tmp_path / "caller").mkdir()
    (tmp_path / "notes.txt").write_text("not a log")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ConfigurationError, match="holds no log") as caught:
        provider_for(f"replay:{tmp_path}")
    assert "<folder>/<session>.jsonl" in str(caught.value)
