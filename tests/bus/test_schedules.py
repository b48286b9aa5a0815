"""Schedules in one process: bus.schedule, bus.scheduled, bus.cancel_scheduled, lost at stop."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from llmgine.bus import MessageBus
from llmgine.bus.schedules import ScheduleFiredEvent
from llmgine.errors import ConfigurationError
from llmgine.messages import Command, Event


class RemindCommand(Command):
    text: str


class TickEvent(Event):
    n: int


class Fired:
    """Collects ScheduleFiredEvents; ``wait(n)`` returns once ``n`` have come."""

    def __init__(self, bus: MessageBus) -> None:
        self.events: list[ScheduleFiredEvent] = []
        self._changed = asyncio.Event()
        bus.register_event_handler(ScheduleFiredEvent, self._seen)

    def _seen(self, event: ScheduleFiredEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait(self, n: int) -> list[ScheduleFiredEvent]:
        while len(self.events) < n:
            self._changed.clear()
            await self._changed.wait()
        return self.events


@pytest.mark.timeout(20)
async def test_a_scheduled_command_runs_later_and_its_firing_is_an_event(bus: MessageBus) -> None:
    ran: list[str] = []
    bus.register_command_handler(RemindCommand, lambda c: ran.append(c.text) or "reminded")
    fired = Fired(bus)
    schedule_id = await bus.schedule(RemindCommand(text="stand up"), after=0.05)
    [pending] = bus.scheduled
    assert pending.id == schedule_id and not pending.shared
    assert ran == []  # not yet
    [event] = await fired.wait(1)
    assert ran == ["stand up"]
    assert (event.schedule_id, event.kind, event.success) == (schedule_id, "command", True)
    assert bus.scheduled == []


@pytest.mark.timeout(20)
async def test_an_event_scheduled_at_a_time_is_published_then(bus: MessageBus) -> None:
    ticks: list[int] = []
    bus.register_event_handler(TickEvent, lambda e: ticks.append(e.n))
    fired = Fired(bus)
    await bus.schedule(TickEvent(n=7), at=datetime.now(UTC) + timedelta(milliseconds=50))
    [event] = await fired.wait(1)
    await bus.wait_for_events()
    assert ticks == [7]
    assert event.kind == "event" and event.success is None


@pytest.mark.timeout(20)
async def test_a_failing_scheduled_command_says_so_in_its_event(bus: MessageBus) -> None:
    def fail(command: RemindCommand) -> None:
        raise ValueError("no calendar")

    bus.register_command_handler(RemindCommand, fail)
    fired = Fired(bus)
    await bus.schedule(RemindCommand(text="x"), after=0)
    [event] = await fired.wait(1)
    assert event.success is False and event.error == "no calendar"


@pytest.mark.timeout(20)
async def test_a_cancelled_schedule_never_fires(bus: MessageBus) -> None:
    ran: list[str] = []
    bus.register_command_handler(RemindCommand, lambda c: ran.append(c.text))
    fired = Fired(bus)
    cancelled = await bus.schedule(RemindCommand(text="cancelled"), after=0.02)
    await bus.schedule(RemindCommand(text="kept"), after=0.1)  # due after the cancelled one
    assert await bus.cancel_scheduled(cancelled) is True
    assert await bus.cancel_scheduled(cancelled) is False
    await fired.wait(1)
    assert ran == ["kept"]


@pytest.mark.timeout(20)
async def test_pending_schedules_are_said_to_be_lost_at_stop(
    tmp_path: Path, read_log: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bus = MessageBus(log_dir=tmp_path, log_filename="stop.jsonl", enable_console_traces=False)
    await bus.start()
    schedule_id = await bus.schedule(RemindCommand(text="later"), after=3600)
    with caplog.at_level(logging.WARNING, logger="llmgine.bus.schedules"):
        await bus.stop()
    assert "still pending when the bus stopped" in caplog.text
    lost = [r for r in read_log(bus.log_path) if r["type"] == "ScheduleLostEvent"]
    assert [r["data"]["schedule_id"] for r in lost] == [schedule_id]
    assert bus.scheduled == []


async def test_a_schedule_needs_one_clear_time(bus: MessageBus) -> None:
    with pytest.raises(ConfigurationError, match="one of them"):
        await bus.schedule(TickEvent(n=1))
    with pytest.raises(ConfigurationError, match="one of them"):
        await bus.schedule(TickEvent(n=1), after=1, at=datetime.now(UTC))
    with pytest.raises(ConfigurationError, match="must be 0 to"):
        await bus.schedule(TickEvent(n=1), after=-1)
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        await bus.schedule(TickEvent(n=1), at=datetime.now())
    assert bus.scheduled == []


async def test_a_schedule_refuses_times_that_are_not_times(bus: MessageBus) -> None:
    for after in (float("nan"), float("inf"), 1e12, "5", True):
        with pytest.raises(ConfigurationError):
            await bus.schedule(TickEvent(n=1), after=after)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="datetime"):
        await bus.schedule(TickEvent(n=1), at="tomorrow")  # type: ignore[arg-type]
    assert bus.scheduled == []
