"""The caller's middleware runs around commands that a worker process handles."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import remote_app
from conftest import StartWorker, runs

from llmgine.bus import MessageBus
from llmgine.bus.middleware import CallNext
from llmgine.messages import Command, CommandResult


@pytest.mark.timeout(120)
async def test_the_callers_middleware_wraps_a_command_run_in_a_worker(
    caller: MessageBus, start_worker: StartWorker
) -> None:
    worker = start_worker()
    seen: list[tuple[str, object]] = []

    async def watch(command: Command, call_next: CallNext) -> CommandResult:
        seen.append(("in", type(command).__name__))
        result = await call_next(command)
        seen.append(("out", result.result))
        return result

    caller.add_middleware(watch)
    result = await caller.execute(remote_app.WhoAmICommand(), timeout=60)
    assert result.success, result.error
    assert result.result == worker.pid != os.getpid()  # it ran in the worker
    assert seen == [("in", "WhoAmICommand"), ("out", worker.pid)]


@pytest.mark.timeout(120)
async def test_a_middleware_can_refuse_a_remote_command_before_it_is_sent(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    start_worker()
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()

    async def deny(command: Command, call_next: CallNext) -> CommandResult:
        return CommandResult(success=False, error="not allowed", error_type="PermissionError")

    caller.add_middleware(deny)
    command = remote_app.BlockingCommand(seconds=0, runs_dir=str(runs_dir))
    result = await caller.execute(command, timeout=60)
    assert (result.success, result.error_type) == (False, "PermissionError")
    assert runs(runs_dir) == 0
    caller.remove_middleware(deny)
    assert (await caller.execute(command, timeout=60)).success
    assert runs(runs_dir) == 1


@pytest.mark.timeout(120)
async def test_each_retry_of_a_remote_command_gets_a_whole_timeout_of_its_own(
    caller: MessageBus, start_worker: StartWorker
) -> None:
    from llmgine.bus.policies import Retry

    await asyncio.to_thread(start_worker)
    assert (await caller.execute(remote_app.AddCommand(a=1, b=1), timeout=30)).success
    # The backoff (1.25-2.5 s) outlasts the 1 s timeout: the second try still gets its own.
    caller.add_middleware(Retry(remote_app.CrashCommand, attempts=2, backoff=2.5))
    result = await caller.execute(remote_app.CrashCommand(reason="boom"), timeout=1)
    assert result.error_type == "ValueError", result.error  # the second try ran, and crashed
    assert result.metadata.get("attempts") == 2
