"""The bus never hangs: handlers that fan out, engines in handlers, full queues, idle loops."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from llmgine import BusStateError, LLMEngine
from llmgine.bus import MessageBus
from llmgine.messages import Event


class TriggeredEvent(Event):
    n: int = 0


class ChildEvent(Event):
    n: int = 0


def quiet_bus(tmp_path: Path, max_queue_size: int) -> MessageBus:
    return MessageBus(
        log_dir=tmp_path,
        log_filename="bus.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
        max_queue_size=max_queue_size,
    )


async def publish_children(bus: MessageBus, n: int) -> None:
    await bus.publish(ChildEvent(n=n))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fan_out", ["gather", "task_group", "wait_for"])
async def test_a_handler_awaiting_tasks_that_publish_never_deadlocks(
    tmp_path: Path, fan_out: str
) -> None:
    bus = quiet_bus(tmp_path, max_queue_size=10)
    children: list[int] = []

    async def handler(event: TriggeredEvent) -> None:
        if fan_out == "gather":
            await asyncio.gather(*(publish_children(bus, i) for i in range(40)))
        elif fan_out == "task_group":
            async with asyncio.TaskGroup() as group:
                for i in range(40):
                    group.create_task(publish_children(bus, i))
        else:
            for i in range(40):
                await asyncio.wait_for(publish_children(bus, i), timeout=30)

    bus.register_event_handler(TriggeredEvent, handler)
    bus.register_event_handler(ChildEvent, lambda e: children.append(e.n))
    async with bus:
        for n in range(25):
            await bus.publish(TriggeredEvent(n=n))
        await asyncio.wait_for(bus.wait_for_events(), timeout=30)
    assert len(children) == 25 * 40
    assert bus.stats.publisher_stalls == 0  # no waiting at all, not a timeout that rescued it


class AskedEvent(Event):
    n: int


@pytest.mark.timeout(120)
async def test_a_handler_chatting_with_an_engine_that_calls_tools_survives_a_burst(
    tmp_path: Path,
) -> None:
    bus = quiet_bus(tmp_path, max_queue_size=20)

    def add(a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: The first.
            b: The second.
        """
        return a + b

    engine = LLMEngine(bus, model="offline", tools=[add])
    replies: list[str] = []

    async def ask(event: AskedEvent) -> None:
        replies.append(
            await engine.chat(f"Use add on a=1, b={event.n}", conversation_id=f"c{event.n}")
        )

    bus.register_event_handler(AskedEvent, ask)
    async with bus:
        for n in range(150):
            await bus.publish(AskedEvent(n=n))
        await asyncio.wait_for(bus.wait_for_events(), timeout=100)
    assert len(replies) == 150
    assert any(str(1 + 149) in reply for reply in replies)  # the tool ran: 1 + 149
    assert bus.stats.publisher_stalls == 0


@pytest.mark.timeout(60)
async def test_a_publisher_stuck_behind_a_handler_waiting_for_it_gives_up_waiting(
    tmp_path: Path,
) -> None:
    """A handler waits for a task started outside any handler: the last safety net."""
    bus = quiet_bus(tmp_path, max_queue_size=2)
    bus._transport.queue.stall_timeout = 0.2  # the safety net's patience, shortened for the test
    produced = asyncio.get_running_loop().create_future()

    async def producer() -> None:
        for n in range(6):
            await bus.publish(ChildEvent(n=n))
        produced.set_result(None)

    async def waits_for_producer(event: TriggeredEvent) -> None:
        await produced

    bus.register_event_handler(TriggeredEvent, waits_for_producer)
    async with bus:
        await bus.publish(TriggeredEvent())
        await asyncio.wait_for(producer(), timeout=30)
        await asyncio.wait_for(bus.wait_for_events(), timeout=30)
    assert bus.stats.publisher_stalls >= 1


class CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts the callbacks it is asked to run: wakeups, among others."""

    def __init__(self) -> None:
        super().__init__()
        self.callbacks = 0

    def call_soon(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.callbacks += 1
        return super().call_soon(*args, **kwargs)


def test_each_waiting_publisher_is_woken_for_its_own_slot_only(tmp_path: Path) -> None:
    waiting = 300

    async def main() -> list[int]:
        bus = quiet_bus(tmp_path, max_queue_size=1)
        handled: list[int] = []
        bus.register_event_handler(ChildEvent, lambda e: handled.append(e.n))
        async with bus:
            await asyncio.gather(*(bus.publish(ChildEvent(n=n)) for n in range(waiting)))
            await bus.wait_for_events()
        return handled

    loop = CountingLoop()
    try:
        handled = loop.run_until_complete(main())
    finally:
        loop.close()
    assert handled == list(range(waiting))  # first come, first served
    # A herd wakes every waiter for every slot: ~waiting**2 / 2 = 45,000 callbacks here.
    assert loop.callbacks < 20 * waiting


def run_in_thread(coroutine_factory) -> tuple[threading.Thread, list[object]]:  # type: ignore[no-untyped-def]
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(asyncio.run(coroutine_factory()))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.timeout(60)
def test_other_threads_never_block_on_a_bus_loop_that_is_open_but_not_running(
    tmp_path: Path,
) -> None:
    """A plain IPython terminal: the loop runs only while a cell runs."""
    bus = quiet_bus(tmp_path, max_queue_size=10)
    handled: list[int] = []
    bus.register_event_handler(ChildEvent, lambda e: handled.append(e.n))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(bus.start())  # the loop now idles, open but not running

        thread, outcome = run_in_thread(lambda: bus.publish(ChildEvent(n=1)))
        thread.join(timeout=20)
        assert not thread.is_alive(), "publish() blocked on a loop that is not running"
        assert outcome == [None]

        for call in (bus.wait_for_events, bus.stop):
            thread, outcome = run_in_thread(call)
            thread.join(timeout=20)
            assert not thread.is_alive(), f"{call.__name__}() blocked"
            assert isinstance(outcome[0], BusStateError)
            assert "not running" in str(outcome[0])

        loop.run_until_complete(bus.wait_for_events())  # the next "cell" handles it
        assert handled == [1]
        loop.run_until_complete(bus.stop())
    finally:
        loop.close()
    lines = bus.log_path.read_text().splitlines() if bus.log_path else []
    assert len(lines) == 1
