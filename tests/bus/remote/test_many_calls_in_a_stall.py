"""Many execute(timeout=) calls while Redis stalls (SIGSTOP): each returns within its timeout."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
import remote_app
from conftest import StartWorker

from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer

CALLS = 600
TIMEOUT = 3.0
MARGIN = 1.5
"""The stall outlasts the last call's timeout by this much."""


@pytest.mark.timeout(180)
async def test_calls_made_while_redis_stalls_all_return_before_it_resumes(
    caller: MessageBus, start_worker: StartWorker, redis_server: RedisServer, tmp_path: Path
) -> None:
    directory = tmp_path / "runs"
    directory.mkdir()
    await asyncio.to_thread(start_worker, max_concurrency=16)
    assert (await caller.execute(remote_app.AddCommand(a=1, b=1), timeout=30)).success
    resumed = False
    late: list[int] = []

    async def one(i: int) -> None:
        command = remote_app.SlowCommand(seconds=0.2, runs_dir=str(directory))
        await caller.execute(command, timeout=TIMEOUT)
        if resumed:
            late.append(i)

    tasks = []
    assert redis_server.pid is not None
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        for i in range(CALLS):
            # The pool opens connections meanwhile: redis-py swallows a cancel in their
            # handshake, which a call's timeout must not depend on.
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(0.001)  # calls spread over the stall's first seconds
        # The fault: the server stays stopped until every call's timeout (and a margin) passed.
        await asyncio.sleep(TIMEOUT + MARGIN)
    finally:
        resumed = True
        os.kill(redis_server.pid, signal.SIGCONT)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    assert late == [], f"{len(late)} calls returned only after Redis resumed"
