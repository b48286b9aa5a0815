"""Schedules on the shared bus: kept in Redis, fired exactly once, surviving their maker."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import HERE, StartWorker, runs
from remote_app import BlockingCommand

from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer
from llmgine.bus.schedules import ScheduleFiredEvent

MAKER = """
import asyncio, sys
from llmgine.bus import MessageBus
from remote_app import BlockingCommand

async def main() -> None:
    url, namespace, runs_dir = sys.argv[1:4]
    bus = MessageBus(log_dir=None)
    await bus.connect(url, namespace, heartbeat=0.2)
    schedule_id = await bus.schedule(BlockingCommand(seconds=0, runs_dir=runs_dir), after=1.0)
    print("scheduled", schedule_id, flush=True)
    await asyncio.Event().wait()  # until killed

asyncio.run(main())
"""


class FiredHere:
    def __init__(self, bus: MessageBus) -> None:
        self.events: list[ScheduleFiredEvent] = []
        self.seen = asyncio.Event()
        bus.register_event_handler(ScheduleFiredEvent, self._on)

    def _on(self, event: ScheduleFiredEvent) -> None:
        self.events.append(event)
        self.seen.set()


@pytest.mark.timeout(120)
async def test_a_schedule_outlives_its_maker_and_fires_once_among_racing_processes(
    caller: MessageBus,
    start_worker: StartWorker,
    redis_server: RedisServer,
    namespace: str,
    tmp_path: Path,
    client: Any,
) -> None:
    fired = FiredHere(caller)
    start_worker()
    start_worker()  # two workers and the caller all look for due schedules
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    maker = await asyncio.create_subprocess_exec(
        *[sys.executable, "-c", MAKER, redis_server.url, namespace, str(runs_dir)],
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert maker.stdout is not None
        line = await asyncio.wait_for(maker.stdout.readline(), timeout=60)
        assert line.startswith(b"scheduled "), line
        schedule_id = line.split()[1].decode()
    finally:
        maker.kill()  # SIGKILL: the process that made the schedule is gone
        await maker.wait()
    assert await client.zscore(f"{namespace}:schedules", schedule_id) is not None
    await asyncio.wait_for(fired.seen.wait(), timeout=60)
    [event] = fired.events
    assert event.schedule_id == schedule_id and event.success is True
    # Taken and read in one script: nothing is left for another process to fire.
    assert await client.zcard(f"{namespace}:schedules") == 0
    assert await client.exists(f"{namespace}:schedule:{schedule_id}") == 0
    await caller.wait_for_events()
    assert runs(runs_dir) == 1
    assert len(fired.events) == 1


@pytest.mark.timeout(60)
async def test_a_shared_schedule_is_listed_and_can_be_cancelled_from_another_process(
    caller: MessageBus, redis_server: RedisServer, namespace: str, client: Any, tmp_path: Path
) -> None:
    schedule_id = await caller.schedule(
        BlockingCommand(seconds=0, runs_dir=str(tmp_path)), after=3600
    )
    [pending] = caller.scheduled
    assert pending.id == schedule_id and pending.shared
    other = MessageBus(log_dir=None)
    await other.connect(redis_server.url, namespace, heartbeat=0.2)
    try:
        assert await other.cancel_scheduled(schedule_id) is True
        assert await other.cancel_scheduled(schedule_id) is False
    finally:
        await other.stop()
    for _ in range(200):  # the maker learns at its next look that it is gone
        if not caller.scheduled:
            break
        await asyncio.sleep(0.05)
    assert caller.scheduled == []
    assert await client.zcard(f"{namespace}:schedules") == 0
    assert await client.exists(f"{namespace}:schedule:{schedule_id}") == 0


@pytest.mark.timeout(60)
async def test_a_shared_schedule_is_not_lost_when_its_maker_stops(
    redis_server: RedisServer, namespace: str, client: Any, tmp_path: Path
) -> None:
    bus = MessageBus(log_dir=tmp_path, log_filename="maker.jsonl")
    await bus.connect(redis_server.url, namespace, heartbeat=0.2)
    schedule_id = await bus.schedule(BlockingCommand(seconds=0, runs_dir=str(tmp_path)), after=3600)
    await bus.stop()
    assert await client.zscore(f"{namespace}:schedules", schedule_id) is not None
    lines = (tmp_path / "maker.jsonl").read_text()
    assert "ScheduleLostEvent" not in lines


@pytest.mark.timeout(60)
async def test_a_redis_gone_away_is_said_once_and_looked_for_less_often(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RedisServer()
    server.start()
    bus = MessageBus(log_dir=None)
    try:
        await bus.connect(server.url, "gone", heartbeat=0.2)
        server.close()  # Redis goes away under the bus
        with caplog.at_level(logging.WARNING, logger="llmgine.bus.schedules"):
            for _ in range(1000):  # until five looks at least have failed
                if bus._schedules.pause >= 1.0:
                    break
                await asyncio.sleep(0.05)
        assert bus._schedules.pause >= 1.0
        warnings = [r for r in caplog.records if "due schedules" in r.getMessage()]
        assert len(warnings) == 1
        assert warnings[0].exc_info is None  # one line, not a traceback per look
    finally:
        await bus.stop()
        server.close()
