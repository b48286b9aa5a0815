"""What a remote handler publishes reaches its caller before the caller's execute() returns."""

from __future__ import annotations

import asyncio

import pytest
from support import quiet_bus

from llmgine.bus import MessageBus
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


@pytest.mark.timeout(120)
async def test_progress_events_arrive_before_the_result_when_the_caller_lags(
    redis_server: RedisServer, namespace: str
) -> None:
    # A small queue and a handler that yields: the caller's reader waits for room while
    # the reply comes in, and execute() must still not return before it read them all.
    caller = MessageBus(
        log_dir=None, enable_console_metrics=False, enable_console_traces=False, max_queue_size=2
    )
    worker = quiet_bus()

    async def report(command: ReportCommand) -> str:
        for step in range(command.steps):
            await worker.publish(ProgressEvent(step=step))
        return "done"

    seen: list[int] = []

    async def slow(event: ProgressEvent) -> None:
        for _ in range(20):
            await asyncio.sleep(0)  # gives the loop away, no clock involved
        seen.append(event.step)

    worker.register_command_handler(ReportCommand, report)
    caller.register_event_handler(ProgressEvent, slow)
    try:
        await caller.connect(redis_server.url, namespace, heartbeat=0.2)
        await worker.connect(redis_server.url, namespace, heartbeat=0.2)
        assert worker.remote is not None
        await worker.remote.wait_for_listener(ProgressEvent)
        for trial in range(3):
            seen.clear()
            result = await caller.execute(ReportCommand(steps=200))
            await caller.wait_for_events()
            assert result.result == "done"
            assert seen == list(range(200)), f"trial {trial}: {len(seen)} of 200 before the result"
    finally:
        await worker.stop()
        await caller.stop()
