"""Redis stalls (SIGSTOP) while a worker runs a command: the caller gets the real answer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import remote_app
from conftest import StartWorker, runs
from support import taken_by
from test_stalled_redis import stalled

from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer


@pytest.mark.timeout(120)
@pytest.mark.parametrize("heartbeat", [0.2, 1.0], ids=["same-heartbeat", "slower-worker"])
async def test_a_command_running_while_redis_stalls_gets_its_real_result(
    caller: MessageBus,
    start_worker: StartWorker,
    redis_server: RedisServer,
    client: Any,
    tmp_path: Path,
    heartbeat: float,
) -> None:
    directory = tmp_path / "runs"
    directory.mkdir()
    # The caller beats every 0.2 s; a worker beating every second takes up to two of its
    # heartbeats to advertise again after the stall.
    options = {} if heartbeat == 0.2 else {"heartbeat": heartbeat}
    worker = await asyncio.to_thread(start_worker, **options)
    command = remote_app.SlowCommand(seconds=5, runs_dir=str(directory))
    running = asyncio.create_task(caller.execute(command, timeout=60))
    await asyncio.wait_for(taken_by(client, caller, remote_app.SlowCommand), timeout=60)
    # Longer than the adverts last (three heartbeats): they all lapse in the stall.
    with stalled(redis_server):
        await asyncio.sleep(4)
    result = await asyncio.wait_for(running, timeout=60)
    assert (result.success, result.result) == (True, worker.pid), result.error
    assert runs(directory) == 1
