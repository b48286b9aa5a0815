"""Tasks a handler starts are in the handler while it runs, and ordinary code once it returned."""

from __future__ import annotations

import asyncio

import pytest

from llmgine import BusStateError
from llmgine.bus import MessageBus
from llmgine.messages import Event


class StartEvent(Event):
    n: int = 0


async def try_to_wait(bus: MessageBus) -> str:
    try:
        await bus.wait_for_events()
    except BusStateError:
        return "refused"
    return "waited"


@pytest.mark.timeout(30)
async def test_a_task_a_handler_started_may_wait_for_the_bus_only_once_the_handler_returned(
    bus: MessageBus,
) -> None:
    during: list[str] = []
    left: list[asyncio.Task[str]] = []
    returned = asyncio.Event()

    async def handler(event: StartEvent) -> None:
        # One task waits while the handler still runs (it would wait for itself)...
        during.append(await asyncio.create_task(try_to_wait(bus)))

        # ...another is left behind and waits once the handler has returned.
        async def after() -> str:
            await returned.wait()
            return await try_to_wait(bus)

        left.append(asyncio.create_task(after()))

    bus.register_event_handler(StartEvent, handler)
    await bus.publish(StartEvent())
    await bus.wait_for_events()
    returned.set()
    assert during == ["refused"]
    assert await asyncio.wait_for(left[0], 10) == "waited"


@pytest.mark.timeout(30)
async def test_each_delivery_is_its_own_a_task_of_an_earlier_one_is_out_of_the_handler(
    bus: MessageBus,
) -> None:
    results: list[str] = []
    first_left: list[asyncio.Task[str]] = []
    second_runs = asyncio.Event()
    release = asyncio.Event()

    async def handler(event: StartEvent) -> None:
        if event.n == 0:

            async def after() -> str:
                await second_runs.wait()  # the second delivery runs now, not the first
                return await try_to_wait(bus)

            first_left.append(asyncio.create_task(after()))
            return
        second_runs.set()
        await release.wait()  # the second delivery stays running meanwhile

    bus.register_event_handler(StartEvent, handler)
    await bus.publish(StartEvent(n=0))
    await bus.publish(StartEvent(n=1))
    await second_runs.wait()
    # The first delivery's task is no longer in a handler while the second runs: it
    # waits for the bus (busy until the second is released) rather than being refused.
    release.set()
    results.append(await asyncio.wait_for(first_left[0], 10))
    assert results == ["waited"]
