"""Tutorial 04's error rate holds for a log with a command still running (its success is <NA>)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from llmgine import Command, MessageBus
from llmgine.analysis import load_events

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


class StepCommand(Command):
    fail: bool = False
    hang: bool = False


def _error_rate_line() -> str:
    notebook = json.loads((NOTEBOOKS / "04_log_analysis.ipynb").read_text())
    lines = [
        line
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
        if line.startswith("error_rate =")
    ]
    assert len(lines) == 1
    return lines[0]


@pytest.mark.timeout(60)
async def test_the_tutorials_error_rate_counts_the_finished_commands(tmp_path: Path) -> None:
    running, release = asyncio.Event(), asyncio.Event()

    async def step(command: StepCommand) -> str:
        if command.fail:
            raise ValueError("this one fails")
        if command.hang:
            running.set()
            await release.wait()
        return "ok"

    bus = MessageBus(log_dir=tmp_path, log_filename="run.jsonl", enable_console_metrics=False)
    bus.register_command_handler(StepCommand, step)
    async with bus:
        await bus.execute(StepCommand())
        await bus.execute(StepCommand(fail=True))
        hanging = asyncio.ensure_future(bus.execute(StepCommand(hang=True)))
        await running.wait()
        await bus.wait_for_events()  # every line so far is in the log
        commands = load_events(tmp_path / "run.jsonl").llmgine.commands()
        release.set()
        await hanging
    assert commands["success"].isna().sum() == 1  # the one still running
    namespace = {"commands": commands}
    exec(_error_rate_line(), namespace)
    assert namespace["error_rate"] == pytest.approx(0.5)  # one failure in two finished


def test_no_tutorial_casts_a_success_column_to_bool() -> None:
    sources = [
        "".join(cell["source"])
        for path in sorted(NOTEBOOKS.glob("*.ipynb"))
        for cell in json.loads(path.read_text())["cells"]
    ]
    sources.append((NOTEBOOKS / "build.py").read_text())
    assert not any('["success"].astype(bool)' in text for text in sources)
