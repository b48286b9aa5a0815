"""Workers killed mid-command: taken over once, or a clear failure; never run twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import remote_app
from conftest import StartWorker

from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer
from llmgine.bus.remote.keys import WORKERS, Keys, type_key


def started_log(bus: MessageBus) -> tuple[list[int], asyncio.Event]:
    starters: list[int] = []
    started = asyncio.Event()

    def seen(event: remote_app.SlowStartedEvent) -> None:
        starters.append(event.worker)
        started.set()

    bus.register_event_handler(remote_app.SlowStartedEvent, seen)
    return starters, started


@pytest.mark.timeout(180)
async def test_a_worker_killed_mid_command_is_taken_over_and_the_command_runs_once(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    starters, started = started_log(caller)
    first = await asyncio.to_thread(start_worker, claim_after=1.0)
    # Longer than a second worker takes to start on a loaded machine: the first must still
    # be running it when it is killed.
    command = remote_app.SlowCommand(seconds=8, runs_dir=str(runs))
    pending = asyncio.create_task(caller.execute(command, timeout=90))
    await asyncio.wait_for(started.wait(), timeout=60)
    second = await asyncio.to_thread(start_worker, claim_after=1.0)
    first.kill()
    result = await pending
    assert result.success, result.error
    assert result.result == second.pid
    assert starters == [first.pid, second.pid]
    assert sorted(p.name for p in runs.iterdir()) == [f"{command.id}.{second.pid}"]


@pytest.mark.timeout(180)
async def test_when_the_only_worker_dies_the_caller_fails_clearly_and_nobody_runs_it_later(
    caller: MessageBus,
    start_worker: StartWorker,
    tmp_path: Path,
    redis_server: RedisServer,
    namespace: str,
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    starters, started = started_log(caller)
    only = await asyncio.to_thread(start_worker, claim_after=1.0)
    pending = asyncio.create_task(
        caller.execute(remote_app.SlowCommand(seconds=1.5, runs_dir=str(runs)))
    )
    await asyncio.wait_for(started.wait(), timeout=60)
    only.kill()
    result = await asyncio.wait_for(pending, timeout=60)  # no timeout given: still bounded
    assert not result.success
    assert result.error_type == "HandlerNotFoundError"
    assert "left the shared bus before answering" in (result.error or "")

    # A new worker takes the dead one's entry over, sees it was abandoned, and drops it.
    await asyncio.to_thread(start_worker, claim_after=1.0)
    stream = Keys(namespace).command(type_key(remote_app.SlowCommand))
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        for _ in range(600):  # polls Redis's own state, bounded (60 s)
            if (await client.xpending(stream, WORKERS))["pending"] == 0:
                break
            await asyncio.sleep(0.1)
        assert (await client.xpending(stream, WORKERS))["pending"] == 0
    finally:
        await client.aclose()
    await caller.wait_for_events()
    assert starters == [only.pid]
    assert list(runs.iterdir()) == []


@pytest.mark.timeout(120)
async def test_execute_timeout_holds_for_a_remote_command(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    await asyncio.to_thread(start_worker)
    result = await caller.execute(
        remote_app.SlowCommand(seconds=30, runs_dir=str(tmp_path)), timeout=0.5
    )
    assert not result.success
    assert result.error_type == "TimeoutError"
