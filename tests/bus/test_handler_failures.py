"""The bus never dies silently: every handler outcome is reported and handling goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from llmgine import EventHandlerFailedEvent
from llmgine.bus import MessageBus
from llmgine.messages import Event


class PokedEvent(Event):
    how: str


class AfterwardsEvent(Event):
    pass


class CustomBaseError(BaseException):
    pass


async def cancelled_elsewhere() -> None:
    task = asyncio.get_running_loop().create_task(asyncio.sleep(30))
    await asyncio.sleep(0)
    task.cancel()
    await task  # raises CancelledError in the handler, though nobody cancelled the bus


def raiser(how: str) -> Any:
    async def handler(event: PokedEvent) -> None:
        if how == "cancelled":
            await cancelled_elsewhere()
        elif how == "generator_exit":
            raise GeneratorExit
        elif how == "keyboard_interrupt":
            raise KeyboardInterrupt
        elif how == "system_exit":
            raise SystemExit(3)
        elif how == "custom_base":
            raise CustomBaseError("mine")
        else:
            raise ValueError("plain")

    return handler


KINDS = {
    "cancelled": "CancelledError",
    "generator_exit": "GeneratorExit",
    "keyboard_interrupt": "KeyboardInterrupt",
    "system_exit": "SystemExit",
    "custom_base": "CustomBaseError",
    "plain": "ValueError",
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", list(KINDS))
async def test_any_exception_from_a_handler_is_reported_and_the_bus_goes_on(
    tmp_path: Path, how: str
) -> None:
    bus = MessageBus(log_dir=tmp_path, log_filename="bus.jsonl", enable_console_traces=False)
    failures: list[EventHandlerFailedEvent] = []
    later: list[str] = []
    after: list[AfterwardsEvent] = []
    bus.register_event_handler(PokedEvent, raiser(how))
    bus.register_event_handler(PokedEvent, lambda e: later.append(e.how))  # the next handler runs
    bus.register_event_handler(AfterwardsEvent, after.append)
    bus.register_event_handler(EventHandlerFailedEvent, failures.append)
    async with bus:
        await bus.publish(PokedEvent(how=how))
        await asyncio.wait_for(bus.wait_for_events(), 10)
        await bus.publish(AfterwardsEvent())
        await asyncio.wait_for(bus.wait_for_events(), 10)
        assert bus.is_running
    assert later == [how]
    assert len(after) == 1
    assert [f.error_type for f in failures] == [KINDS[how]]
    assert bus.stats.handler_failures == 1
    assert bus.stats.consumer_restarts == 0


@pytest.mark.timeout(30)
async def test_a_consumer_that_dies_anyway_is_restarted_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bus = MessageBus(log_dir=None, enable_console_traces=False)
    handled: list[str] = []
    bus.register_event_handler(PokedEvent, lambda e: handled.append(e.how))
    real_deliver = bus._transport._deliver
    calls = 0

    async def broken_once(event: Event, span: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the bus itself")
        await real_deliver(event, span)

    bus._transport._deliver = broken_once  # fault injection: the bus's own code fails
    async with bus:
        await bus.publish(PokedEvent(how="lost to the bug"))
        await bus.publish(PokedEvent(how="second"))
        await asyncio.wait_for(bus.wait_for_events(), 10)
        assert bus.is_running
    assert handled == ["second"]
    assert bus.stats.consumer_restarts == 1
    assert "restarted" in caplog.text
