"""Publishers waiting for room: released on stop, never held by a loop that cannot run."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from llmgine.bus import MessageBus
from llmgine.bus.queue import EventQueue
from llmgine.messages import Event


class ChildEvent(Event):
    n: int = 0


class TriggerEvent(Event):
    pass


stranded: list[asyncio.Task[None]] = []
"""Publishers left on loops the tests close (kept referenced, as asyncio asks)."""


def quiet(max_queue_size: int, stall_timeout: float) -> MessageBus:
    bus = MessageBus(
        log_dir=None,
        enable_console_metrics=False,
        enable_console_traces=False,
        max_queue_size=max_queue_size,
    )
    bus._transport.queue.stall_timeout = stall_timeout
    return bus


async def until(condition: Any) -> None:
    """Let the loop run other tasks until ``condition()`` holds (no clock involved)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


@pytest.mark.timeout(60)
async def test_stop_releases_every_waiting_publisher_at_once() -> None:
    bus = quiet(max_queue_size=2, stall_timeout=3600)  # only stop() may release them
    gate = asyncio.Event()
    handled: list[int] = []

    async def slow(event: ChildEvent) -> None:
        await gate.wait()
        handled.append(event.n)

    bus.register_event_handler(ChildEvent, slow)
    await bus.start()
    for n in range(3):  # one in the handler, the queue full
        await bus.publish(ChildEvent(n=n))
    waiting = [asyncio.create_task(bus.publish(ChildEvent(n=10 + n))) for n in range(30)]
    await until(lambda: len(bus._transport.queue._waiters) == 30)
    gate.set()
    await bus.stop()
    await asyncio.wait_for(asyncio.gather(*waiting), 10)  # before: ~1 s each, one at a time
    assert bus.stats.publisher_stalls == 0
    await bus.start()  # what they published after stop() is handled now
    await asyncio.wait_for(bus.wait_for_events(), 10)
    await bus.stop()
    assert sorted(handled) == [0, 1, 2, *range(10, 40)]


@pytest.mark.timeout(60)
async def test_a_waiter_whose_loop_was_closed_costs_no_event() -> None:
    bus = quiet(max_queue_size=2, stall_timeout=3600)
    gate = asyncio.Event()
    handled: list[int] = []

    async def slow(event: ChildEvent) -> None:
        await gate.wait()
        handled.append(event.n)

    bus.register_event_handler(ChildEvent, slow)
    async with bus:
        for n in range(3):
            await bus.publish(ChildEvent(n=n))

        def publish_then_close() -> None:
            loop = asyncio.new_event_loop()
            stranded.append(loop.create_task(bus.publish(ChildEvent(n=99))))
            loop.run_until_complete(asyncio.sleep(0))
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()  # closed while its publisher waits for room

        thread = threading.Thread(target=publish_then_close)
        thread.start()
        await asyncio.to_thread(thread.join)
        assert len(bus._transport.queue._waiters) == 1
        gate.set()
        for n in range(3, 8):
            await bus.publish(ChildEvent(n=n))
        await asyncio.wait_for(bus.wait_for_events(), 10)
    assert sorted(handled) == list(range(8))  # before: one event lost to the dead waiter
    assert bus.stats.consumer_restarts == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("state", ["closed", "blocked"])
async def test_a_waiter_whose_loop_cannot_run_holds_nobody_behind_it(state: str) -> None:
    bus = quiet(max_queue_size=1, stall_timeout=0.2)
    produced = asyncio.Event()

    async def waits_for_the_producer(event: TriggerEvent) -> None:
        await produced.wait()

    bus.register_event_handler(TriggerEvent, waits_for_the_producer)
    unblock = threading.Event()
    async with bus:
        await bus.publish(TriggerEvent())
        await until(lambda: bus.pending_events == 0)  # the consumer is in the handler now
        await bus.publish(ChildEvent(n=0))  # the queue is full

        def first_in_line() -> None:
            loop = asyncio.new_event_loop()
            stranded.append(loop.create_task(bus.publish(ChildEvent(n=99))))
            loop.run_until_complete(asyncio.sleep(0))
            loop.run_until_complete(asyncio.sleep(0))
            if state == "closed":
                loop.close()
            else:
                unblock.wait(timeout=60)  # alive, but its thread never runs it again
                loop.close()

        thread = threading.Thread(target=first_in_line, daemon=True)
        thread.start()
        await until(lambda: len(bus._transport.queue._waiters) == 1)

        async def producer() -> None:
            await bus.publish(ChildEvent(n=1))
            produced.set()

        try:
            await asyncio.wait_for(producer(), 10)  # before: waited behind it forever
        finally:
            unblock.set()
            produced.set()
    await asyncio.to_thread(thread.join)


async def test_a_cancelled_oldest_waiter_neither_counts_as_a_stall_nor_costs_a_period() -> None:
    queue: EventQueue[str] = EventQueue(1, stall_timeout=3600)
    queue.put_nowait("first")  # full

    async def publish(item: str) -> None:
        await queue.reserve()
        queue.put_nowait(item)

    oldest = asyncio.create_task(publish("cancelled"))
    second = asyncio.create_task(publish("second"))
    await until(lambda: len(queue._waiters) == 2)
    oldest.cancel()  # its future is cancelled now; its task has not run its cleanup yet
    queue._watch(asyncio.get_running_loop())  # a watchdog tick that saw no progress
    await asyncio.wait_for(second, 10)
    assert queue.stalls == 1
    assert list(queue._items) == ["first", "second"]
