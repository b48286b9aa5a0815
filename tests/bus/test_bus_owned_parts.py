"""What a bus owns it creates itself and ends with it; its faults are llmgine errors."""

from __future__ import annotations

import asyncio
import threading

import pytest

from llmgine.bus import MessageBus
from llmgine.errors import ConfigurationError
from llmgine.messages import Command


class WhereCommand(Command):
    pass


def quiet() -> MessageBus:
    return MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)


def test_a_queue_size_below_one_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="max_queue_size must be at least 1") as caught:
        MessageBus(log_dir=None, max_queue_size=0)
    assert isinstance(caught.value, ValueError)


@pytest.mark.timeout(60)
async def test_stopping_the_bus_ends_the_threads_of_its_sync_handlers() -> None:
    bus = quiet()
    bus.register_command_handler(WhereCommand, lambda command: threading.current_thread())
    async with bus:
        result = await bus.execute(WhereCommand(), timeout=10)  # a sync handler in a thread
        thread = result.result
        assert thread is not threading.current_thread()
        assert thread.name.startswith("llmgine-handler-")
        assert thread.is_alive()  # kept for the next handler while the bus runs
    await asyncio.to_thread(thread.join, 30)
    assert not thread.is_alive()


@pytest.mark.timeout(60)
async def test_a_bus_started_again_runs_sync_handlers_in_new_threads() -> None:
    bus = quiet()
    bus.register_command_handler(WhereCommand, lambda command: threading.current_thread())
    async with bus:
        first = (await bus.execute(WhereCommand(), timeout=10)).result
    async with bus:
        again = (await bus.execute(WhereCommand(), timeout=10)).result
    await asyncio.to_thread(first.join, 30)
    await asyncio.to_thread(again.join, 30)
    assert first is not again
    assert not first.is_alive() and not again.is_alive()


async def test_two_buses_do_not_share_handler_threads() -> None:
    one, two = quiet(), quiet()
    for bus in (one, two):
        bus.register_command_handler(WhereCommand, lambda command: threading.current_thread())
    async with one, two:
        a = (await one.execute(WhereCommand(), timeout=10)).result
        b = (await two.execute(WhereCommand(), timeout=10)).result
    assert a is not b
