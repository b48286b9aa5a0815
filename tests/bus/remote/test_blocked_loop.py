"""An async handler blocking its worker's event loop: the worker keeps its claim, runs it once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import remote_app
from conftest import StartWorker, runs

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
