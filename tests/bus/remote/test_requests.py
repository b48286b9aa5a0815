"""Exactly once per execute() call: the same command executed again runs again, and is answered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import remote_app
from conftest import StartWorker, runs
from support import quiet_bus

from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer


@pytest.mark.timeout(120)
async def test_executing_the_same_command_object_twice_runs_it_twice(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    start_worker()
    command = remote_app.BlockingCommand(seconds=0, runs_dir=str(tmp_path))
    first = await asyncio.wait_for(caller.execute(command), timeout=60)
    again = await asyncio.wait_for(caller.execute(command), timeout=60)  # a re-run cell
    assert first.success and again.success, (first.error, again.error)
    assert runs(tmp_path) == 2  # as in-process: it ran twice


@pytest.mark.timeout(120)
async def test_two_processes_executing_one_command_each_get_their_answer(
    caller: MessageBus, start_worker: StartWorker, redis_server: RedisServer, namespace: str
) -> None:
    start_worker()
    other = quiet_bus()
    await other.connect(redis_server.url, namespace, heartbeat=0.2)
    try:
        command = remote_app.AddCommand(a=2, b=3)
        copy = remote_app.AddCommand.model_validate(command.model_dump())
        assert copy.id == command.id
        here, there = await asyncio.wait_for(
            asyncio.gather(caller.execute(command), other.execute(copy)), timeout=60
        )
        assert (here.result, there.result) == (5, 5)
    finally:
        await other.stop()
