"""What a remote handler publishes reaches its caller before the caller's execute() returns."""

from __future__ import annotations

import pytest
from support import quiet_bus

from llmgine.bus.remote import RedisServer
from llmgine.messages import Command, Event


class ReportCommand(Command):
    steps: int


class ProgressEvent(Event):
    step: int


@pytest.mark.timeout(120)
async def test_progress_events_arrive_before_the_result(
    redis_server: RedisServer, namespace: str
) -> None:
    caller, worker = quiet_bus(), quiet_bus()

    async def report(command: ReportCommand) -> str:
        for step in range(command.steps):
            await worker.publish(ProgressEvent(step=step))
        return "done"

    seen: list[int] = []
    worker.register_command_handler(ReportCommand, report)
    caller.register_event_handler(ProgressEvent, lambda event: seen.append(event.step))
    try:
        await caller.connect(redis_server.url, namespace, heartbeat=0.2)
        await worker.connect(redis_server.url, namespace, heartbeat=0.2)
        assert worker.remote is not None
        await worker.remote.wait_for_listener(ProgressEvent)
        for trial in range(5):
            seen.clear()
            result = await caller.execute(ReportCommand(steps=50))
            await caller.wait_for_events()
            assert result.result == "done"
            assert seen == list(range(50)), f"trial {trial}: {len(seen)} of 50 before the result"
    finally:
        await worker.stop()
        await caller.stop()
