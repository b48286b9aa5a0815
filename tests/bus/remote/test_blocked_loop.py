"""A worker whose loop is blocked keeps its claims; one paused past claim_after ran twice."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import remote_app
from conftest import StartWorker, Worker, runs
from support import taken_by

from llmgine.bus import MessageBus


def worker_log(tmp_path: Path) -> str:
    return (tmp_path / "workers.err").read_text(errors="replace")


@pytest.mark.timeout(120)
async def test_a_handler_blocking_the_loop_longer_than_claim_after_runs_once(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    directory = tmp_path / "runs"
    directory.mkdir()
    workers = [await asyncio.to_thread(start_worker, claim_after=1.0) for _ in range(2)]
    command = remote_app.BlockLoopCommand(seconds=4, runs_dir=str(directory))
    result = await asyncio.wait_for(caller.execute(command), timeout=60)
    assert result.success, result.error
    assert result.result in {w.pid for w in workers}
    for worker in workers:  # each finished what it took: a second run would be on disk
        await asyncio.to_thread(worker.terminate)
    assert runs(directory) == 1
    assert "event loop was blocked" in worker_log(tmp_path)


@pytest.mark.timeout(120)
async def test_a_caller_waits_for_a_lone_worker_whose_loop_a_handler_blocks(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    directory = tmp_path / "runs"
    directory.mkdir()
    worker = await asyncio.to_thread(start_worker)
    command = remote_app.BlockLoopCommand(seconds=4, runs_dir=str(directory))
    result = await asyncio.wait_for(caller.execute(command), timeout=60)
    assert (result.success, result.result) == (True, worker.pid), result.error


@pytest.mark.timeout(120)
async def test_a_worker_paused_past_claim_after_says_the_command_ran_twice(
    caller: MessageBus, start_worker: StartWorker, client: Any, tmp_path: Path
) -> None:
    # No renewal is possible in a paused process: another worker takes the command over.
    # The caller gets the first recorded result; the paused worker, resumed, says so.
    directory = tmp_path / "runs"
    directory.mkdir()
    workers = [await asyncio.to_thread(start_worker, claim_after=1.0) for _ in range(2)]
    command = remote_app.SlowCommand(seconds=2, runs_dir=str(directory))
    running = asyncio.create_task(caller.execute(command, timeout=60))
    holder = await asyncio.wait_for(holding(client, caller, workers), timeout=60)
    other = next(w for w in workers if w is not holder)
    os.kill(holder.pid, signal.SIGSTOP)
    try:
        result = await asyncio.wait_for(running, timeout=60)
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    assert (result.success, result.result) == (True, other.pid), result.error
    await asyncio.to_thread(holder.terminate)  # it finishes its run first
    assert runs(directory) == 2
    assert "RAN TWICE" in worker_log(tmp_path)


async def holding(client: Any, caller: MessageBus, workers: list[Worker]) -> Worker:
    """The worker that took the SlowCommand (its pid is in its consumer's name)."""
    consumer = await taken_by(client, caller, remote_app.SlowCommand)
    return next(w for w in workers if f"-{w.pid}-" in consumer)
