"""What a worker does with a command that blocks, raises anything, crashes it or does not decode."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import remote_app
from conftest import StartWorker, runs

from llmgine.bus import MessageBus


@pytest.mark.timeout(180)
async def test_a_slow_sync_handler_runs_once_and_its_result_comes_back(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    first = await asyncio.to_thread(start_worker, claim_after=1.0)
    second = await asyncio.to_thread(start_worker, claim_after=1.0)
    # Blocks its thread for 15 heartbeats of the worker and three times claim_after.
    command = remote_app.BlockingCommand(seconds=3, runs_dir=str(tmp_path))
    result = await asyncio.wait_for(caller.execute(command), timeout=90)
    assert result.success, result.error
    assert result.result in (first.pid, second.pid)
    # Both drain what they run before they exit: a second run would be on disk now.
    assert await asyncio.to_thread(first.terminate) == 0
    assert await asyncio.to_thread(second.terminate) == 0
    assert runs(tmp_path) == 1


@pytest.mark.timeout(120)
async def test_a_slow_sync_handler_in_the_only_worker_is_not_taken_for_a_dead_worker(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    only = await asyncio.to_thread(start_worker, claim_after=1.0)
    command = remote_app.BlockingCommand(seconds=3, runs_dir=str(tmp_path))
    result = await asyncio.wait_for(caller.execute(command), timeout=90)
    assert result.success, result.error  # not "left the shared bus before answering"
    assert result.result == only.pid


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["CancelledError", "SystemExit", "KeyboardInterrupt"])
async def test_a_base_exception_from_a_remote_handler_is_a_failed_result_and_the_worker_serves_on(
    caller: MessageBus, start_worker: StartWorker, kind: str
) -> None:
    await asyncio.to_thread(start_worker, claim_after=1.0)
    result = await asyncio.wait_for(caller.execute(remote_app.RaiseCommand(kind=kind)), 60)
    assert not result.success
    assert result.error_type == kind
    after = await asyncio.wait_for(caller.execute(remote_app.AddCommand(a=1, b=2)), 60)
    assert after.result == 3


@pytest.mark.timeout(180)
async def test_a_command_that_does_not_decode_in_the_worker_is_answered_with_why(
    caller: MessageBus,
    start_worker: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REMOTE_APP_SKEW", "1")  # the worker's ReportCommand has `pages`
    worker = await asyncio.to_thread(start_worker)
    command = remote_app.ReportCommand(path="q3.pdf")
    result = await asyncio.wait_for(caller.execute(command), timeout=60)
    assert not result.success
    assert result.error_type == "CommandDecodeError"
    error = result.error or ""
    assert str(worker.pid) in error and "remote_app.ReportCommand" in error
    assert "pages" in error and "\n" not in error
    assert result.command_id == command.id
    after = await asyncio.wait_for(caller.execute(remote_app.AddCommand(a=1, b=2)), 60)
    assert after.result == 3


@pytest.mark.timeout(240)
async def test_a_command_that_crashes_its_workers_is_answered_after_max_deliveries(
    caller: MessageBus, start_worker: StartWorker
) -> None:
    workers = [
        await asyncio.to_thread(start_worker, claim_after=1.0, max_deliveries=2) for _ in range(3)
    ]
    result = await asyncio.wait_for(caller.execute(remote_app.ExitCommand()), timeout=150)
    assert not result.success
    assert result.error_type == "WorkerCrashedError"
    assert "crashed 2 workers" in (result.error or "")
    alive = [w for w in workers if w.process.poll() is None]
    assert len(alive) == 1
    after = await asyncio.wait_for(caller.execute(remote_app.WhoAmICommand()), 60)
    assert after.result == alive[0].pid


@pytest.mark.timeout(120)
async def test_a_command_past_its_callers_deadline_is_cancelled_in_the_worker(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    worker = await asyncio.to_thread(start_worker)
    command = remote_app.SlowCommand(seconds=3, runs_dir=str(tmp_path))
    result = await caller.execute(command, timeout=0.5)
    assert result.error_type == "TimeoutError"
    # The worker drains what it runs before it exits: a run still going would finish.
    assert await asyncio.to_thread(worker.terminate) == 0
    assert runs(tmp_path, f"{command.id}.*") == 0
