"""start/stop, async with, restart on another loop, events before start."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmgine.bus import MessageBus
from llmgine.errors import BusStateError
from llmgine.messages import Command, Event


class TickedEvent(Event):
    n: int


async def test_events_published_before_start_are_handled_after_it(
    tmp_path: Path, read_log: Callable[[Path | None], list[dict[str, Any]]]
) -> None:
    bus = MessageBus(log_dir=tmp_path, log_filename="early.jsonl", enable_console_traces=False)
    seen: list[int] = []
    bus.register_event_handler(TickedEvent, lambda e: seen.append(e.n))
    await bus.publish(TickedEvent(n=1))
    await bus.publish(TickedEvent(n=2))
    await bus.wait_for_events()  # not running: returns at once, nothing handled yet
    assert seen == []
    await bus.start()
    await bus.wait_for_events()
    await bus.stop()
    assert seen == [1, 2]
    assert [line["data"]["n"] for line in read_log(bus.log_path)] == [1, 2]


async def test_stop_drains_every_queued_event_including_cascades(tmp_path: Path) -> None:
    bus = MessageBus(log_dir=None, enable_console_traces=False)
    seen: list[int] = []

    async def cascade(e: TickedEvent) -> None:
        seen.append(e.n)
        if e.n < 100:
            await bus.publish(TickedEvent(n=e.n + 1))

    bus.register_event_handler(TickedEvent, cascade)
    await bus.start()
    await bus.publish(TickedEvent(n=0))
    await bus.stop()
    assert seen == list(range(101))
    assert not bus.is_running


async def test_stop_is_idempotent_and_async_with_starts_and_stops(tmp_path: Path) -> None:
    bus = MessageBus(log_dir=tmp_path)
    await bus.stop()  # never started: fine
    async with bus as entered:
        assert entered is bus
        assert bus.is_running
    assert not bus.is_running
    await bus.stop()
    await bus.stop()


async def test_a_bus_restarts_and_appends_to_the_same_log(
    tmp_path: Path, read_log: Callable[[Path | None], list[dict[str, Any]]]
) -> None:
    bus = MessageBus(log_dir=tmp_path, log_filename="restart.jsonl")
    seen: list[int] = []
    bus.register_event_handler(TickedEvent, lambda e: seen.append(e.n))
    for n in range(3):
        async with bus:
            await bus.publish(TickedEvent(n=n))
    assert seen == [0, 1, 2]
    assert [line["data"]["n"] for line in read_log(bus.log_path)] == [0, 1, 2]


def test_a_bus_restarts_on_another_event_loop(tmp_path: Path) -> None:
    bus = MessageBus(log_dir=tmp_path, log_filename="loops.jsonl", enable_console_traces=False)
    seen: list[tuple[int, asyncio.AbstractEventLoop]] = []

    async def record(e: TickedEvent) -> None:
        seen.append((e.n, asyncio.get_running_loop()))  # kept alive, so identities differ

    bus.register_event_handler(TickedEvent, record)

    async def one_round(n: int) -> None:
        async with bus:
            await bus.publish(TickedEvent(n=n))

    asyncio.run(one_round(1))
    # A loop in another thread, like a second kernel loop.
    thread = threading.Thread(target=lambda: asyncio.run(one_round(2)))
    thread.start()
    thread.join()
    asyncio.run(one_round(3))
    assert [n for n, _ in seen] == [1, 2, 3]
    loops = [loop for _, loop in seen]
    assert len({id(loop) for loop in loops}) == 3


def test_a_loop_that_closes_without_stop_loses_nothing(tmp_path: Path) -> None:
    bus = MessageBus(log_dir=None, enable_console_traces=False)
    gate_holder: list[asyncio.Event] = []
    seen: list[int] = []

    async def blocked(e: TickedEvent) -> None:
        if e.n == 0:
            gate = asyncio.Event()
            gate_holder.append(gate)
            await gate.wait()
        seen.append(e.n)

    bus.register_event_handler(TickedEvent, blocked)

    async def abandon() -> None:
        await bus.start()
        for n in range(3):
            await bus.publish(TickedEvent(n=n))
        await asyncio.sleep(0)  # the consumer takes event 0 and blocks in its handler

    asyncio.run(abandon())  # asyncio.run cancels the consumer
    assert not bus.is_running

    async def resume() -> None:
        async with bus:
            pass

    asyncio.run(resume())
    assert seen == [1, 2]  # event 0 was being handled when its loop went away


async def test_stop_from_a_handler_is_refused(bus: MessageBus) -> None:
    from llmgine import EventHandlerFailedEvent

    failures: list[EventHandlerFailedEvent] = []

    async def stopper(e: TickedEvent) -> None:
        await bus.stop()

    bus.register_event_handler(TickedEvent, stopper)
    bus.register_event_handler(EventHandlerFailedEvent, failures.append)
    await bus.publish(TickedEvent(n=0))
    await bus.wait_for_events()
    assert [f.error_type for f in failures] == ["BusStateError"]
    assert bus.is_running


async def test_two_buses_are_independent(tmp_path: Path) -> None:
    a, b = MessageBus(log_dir=None), MessageBus(log_dir=None)
    seen_a: list[Event] = []
    a.register_event_handler(TickedEvent, seen_a.append)
    async with a, b:
        await b.publish(TickedEvent(n=1))
        await b.wait_for_events()
    assert seen_a == []
    assert a is not b


class TickCommand(Command):
    pass


class StopFromHandlerEvent(Event):
    pass


@pytest.mark.timeout(30)
async def test_a_handlers_refused_stop_changes_nothing_its_schedules_still_fire() -> None:
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    ticked = asyncio.Event()
    refused: list[str] = []
    bus.register_command_handler(TickCommand, lambda command: ticked.set())

    async def stop_from_here(event: StopFromHandlerEvent) -> None:
        try:
            await bus.stop()
        except BusStateError as exc:
            refused.append(type(exc).__name__)

    bus.register_event_handler(StopFromHandlerEvent, stop_from_here)
    async with bus:
        await bus.schedule(TickCommand(), after=0.3)
        await bus.publish(StopFromHandlerEvent())
        await bus.wait_for_events()
        assert refused == ["BusStateError"]
        await asyncio.wait_for(ticked.wait(), 10)  # the scheduler was not stopped
        assert bus.is_running
