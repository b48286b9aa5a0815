"""Publishing from another thread's event loop, as a Jupyter kernel subshell does.

JupyterLab may deliver a widget's click to a kernel subshell: a thread with its own event
loop. Whatever it publishes must reach the bus's loop and wake it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmgine.bus import MessageBus
from llmgine.messages import Command, Event


class PingedEvent(Event):
    n: int


class PingCommand(Command):
    pass


def in_other_thread(coroutine_factory: Callable[[], Any]) -> Any:
    """Run a coroutine on a fresh event loop in another thread (like a subshell)."""
    return asyncio.to_thread(lambda: asyncio.run(coroutine_factory()))


async def test_events_published_from_another_loop_wake_the_bus(
    bus: MessageBus, read_log: Callable[[Path | None], list[dict[str, Any]]]
) -> None:
    seen: list[int] = []
    handled = asyncio.Event()

    def record(event: PingedEvent) -> None:
        seen.append(event.n)
        if len(seen) == 3:
            handled.set()

    bus.register_event_handler(PingedEvent, record)

    async def publish_three() -> None:
        async with bus.span("subshell work"):
            for n in range(3):
                await bus.publish(PingedEvent(n=n))

    await in_other_thread(publish_three)
    await asyncio.wait_for(handled.wait(), timeout=5)
    assert seen == [0, 1, 2]
    await bus.wait_for_events()
    lines = read_log(bus.log_path)
    pinged = [line for line in lines if line["type"] == "PingedEvent"]
    span_end = [line for line in lines if line["type"] == "TraceEvent"][-1]
    assert {line["span_id"] for line in pinged} == {span_end["span_id"]}  # the caller's span


async def test_waiting_and_executing_from_another_loop(bus: MessageBus) -> None:
    seen: list[int] = []

    async def handler(command: PingCommand) -> str:
        await bus.publish(PingedEvent(n=7))
        return threading.current_thread().name

    bus.register_command_handler(PingCommand, handler)
    bus.register_event_handler(PingedEvent, lambda e: seen.append(e.n))

    async def execute_and_wait() -> str:
        result = await bus.execute(PingCommand())
        await bus.wait_for_events()
        return str(result.result)

    thread_name = await in_other_thread(execute_and_wait)
    assert thread_name != threading.main_thread().name  # the handler ran in the caller's thread
    assert seen == [7]  # and its event was handled before wait_for_events returned


async def test_stop_from_another_loop(tmp_path: Path) -> None:
    bus = MessageBus(log_dir=None, enable_console_traces=False)
    await bus.start()
    assert bus.loop is asyncio.get_running_loop()
    await in_other_thread(bus.stop)
    assert not bus.is_running
    assert bus.loop is None
