"""A process killed (SIGKILL) mid-command: how the frames and the summary show what never ended."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from llmgine.__main__ import main
from llmgine.analysis import commands_frame, load_events, query, summarize, traces_frame

# A failed command, then a command that hangs and a prompt whose tool hangs (its LLM call
# has ended): once both run and every event so far is logged, the process kills itself.
KILLED_APP = r"""
import asyncio, os, signal, sys
from llmgine.bus import MessageBus
from llmgine.messages import Command
from llmgine.llm import LLMEngine, PromptCommand

class HangCommand(Command):
    fail: bool = False

running = {"hang": asyncio.Event(), "tool": asyncio.Event()}

async def slow_tool(x: str) -> str:
    '''Never answers.

    Args:
        x: anything
    '''
    running["tool"].set()
    await asyncio.Event().wait()
    return x

async def main() -> None:
    bus = MessageBus(log_dir=sys.argv[1], log_filename="k.jsonl",
                     enable_console_metrics=False, enable_console_traces=False)
    await bus.start()

    @bus.command_handler(HangCommand)
    async def hang(cmd: HangCommand) -> None:
        if cmd.fail:
            raise ValueError("this one fails")
        running["hang"].set()
        await asyncio.Event().wait()

    LLMEngine(bus, model="offline", tools=[slow_tool])
    await bus.execute(HangCommand(fail=True))
    tasks = [asyncio.create_task(bus.execute(HangCommand())),
             asyncio.create_task(bus.execute(PromptCommand(prompt="slow_tool x=1")))]
    await running["hang"].wait()
    await running["tool"].wait()
    await bus.wait_for_events()  # every line so far is in the log
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def killed_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The log of a real process killed while two commands ran."""
    folder = tmp_path_factory.mktemp("killed")
    done = subprocess.run(
        [sys.executable, "-c", KILLED_APP, str(folder)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    return folder / "k.jsonl"


@pytest.mark.timeout(180)
def test_success_is_a_nullable_boolean_so_masks_work_with_unfinished_commands(
    killed_log: Path,
) -> None:
    c = load_events(killed_log).llmgine.commands()
    assert c["success"].dtype == "boolean"
    assert c["command_type"].tolist() == ["HangCommand", "HangCommand", "PromptCommand"]
    assert c["success"].isna().tolist() == [False, True, True]
    assert len(c[c.success]) == 0
    assert c[~c.success]["error_type"].tolist() == ["ValueError"]  # <NA> masks as False
    assert len(c[c.success == False]) == 1  # noqa: E712 (the pandas idiom)
    assert c[c.success.isna()]["duration_ms"].isna().all()
    assert commands_frame(killed_log)["success"].dtype == "boolean"  # from the path too


@pytest.mark.timeout(180)
def test_a_trace_whose_root_never_ended_has_no_duration(killed_log: Path) -> None:
    t = traces_frame(killed_log).sort_values("start_time")
    (prompt,) = (row for _, row in t[t["root_name"] == "PromptCommand"].iterrows())
    assert prompt["span_count"] == 3  # the command, its LLM call (ended), its tool (not)
    assert pd.isna(prompt["duration_ms"])  # not the LLM call's milliseconds
    assert pd.isna(prompt["end_time"])
    failed, hung = (row for _, row in t[t["root_name"] == "HangCommand"].iterrows())
    assert failed["duration_ms"] > 0 and pd.notna(failed["end_time"])
    assert pd.isna(hung["duration_ms"])
    spans = query(killed_log, "SELECT name, end_time FROM spans WHERE end_time IS NOT NULL")
    assert "chat offline" in spans["name"].tolist()  # the child that did end


@pytest.mark.timeout(180)
def test_the_summary_says_how_many_commands_never_finished(
    killed_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = summarize(killed_log)
    assert (
        "commands: 3, 0.0% of 1 finished succeeded, unfinished: 2 (no result in the log: "
        "still running, or its process was killed)"
    ) in text
    assert main(["log", str(killed_log)]) == 0
    assert "unfinished: 2" in capsys.readouterr().out


def test_a_time_filter_says_the_missing_results_may_lie_outside_it(log_path: Path) -> None:
    df = load_events(log_path)
    first_result = df.loc[df["type"] == "CommandResultEvent", "timestamp"].min()
    text = summarize(log_path, until=first_result)
    assert "unfinished: " in text
    assert text.count("(no result in the lines since/until keep)") == 1
    assert "unfinished" not in summarize(log_path)
