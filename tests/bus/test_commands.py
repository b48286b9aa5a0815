"""execute(): one handler per command, results, failures, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from llmgine import (
    CommandErrorEvent,
    CommandResultEvent,
    Event,
    HandlerAlreadyRegisteredError,
    HandlerNotFoundError,
)
from llmgine.bus import MessageBus
from llmgine.messages import Command, CommandResult


class AddCommand(Command):
    a: int
    b: int


class FailCommand(Command):
    reason: str = "boom"


class SlowCommand(Command):
    seconds: float


def add(cmd: AddCommand) -> int:
    return cmd.a + cmd.b


async def add_async(cmd: AddCommand) -> int:
    await asyncio.sleep(0)
    return cmd.a + cmd.b


async def fail(cmd: FailCommand) -> None:
    raise RuntimeError(cmd.reason)


def collect(bus: MessageBus, event_type: type[Event] = Event) -> list[Any]:
    seen: list[Any] = []
    bus.register_event_handler(event_type, seen.append)
    return seen


@pytest.mark.parametrize("handler", [add, add_async])
async def test_execute_returns_the_handler_value_as_a_result(
    bus: MessageBus, handler: Callable[[AddCommand], Any]
) -> None:
    bus.register_command_handler(AddCommand, handler)
    cmd = AddCommand(a=2, b=3)
    result = await bus.execute(cmd)
    assert result.success is True
    assert result.result == 5
    assert result.command_id == cmd.id
    assert result.command_type == "AddCommand"
    assert result.duration_ms is not None
    assert result.duration_ms >= 0


async def test_a_handler_may_return_its_own_command_result(bus: MessageBus) -> None:
    bus.register_command_handler(
        AddCommand, lambda c: CommandResult(success=True, result="own", metadata={"k": 1})
    )
    result = await bus.execute(AddCommand(a=1, b=1))
    assert (result.result, result.metadata, result.command_type) == ("own", {"k": 1}, "AddCommand")


async def test_success_publishes_a_command_result_event(bus: MessageBus) -> None:
    seen = collect(bus, CommandResultEvent)
    bus.register_command_handler(AddCommand, add)
    result = await bus.execute(AddCommand(a=1, b=2))
    await bus.wait_for_events()
    assert [e.command_result for e in seen] == [result]


async def test_a_raising_handler_gives_a_failed_result_and_an_error_event(bus: MessageBus) -> None:
    errors = collect(bus, CommandErrorEvent)
    bus.register_command_handler(FailCommand, fail)
    result = await bus.execute(FailCommand(reason="disk full"))
    await bus.wait_for_events()
    assert result.success is False
    assert result.error == "disk full"
    assert result.error_type == "RuntimeError"
    assert len(errors) == 1
    assert errors[0].command_result == result
    assert "Traceback" in errors[0].traceback
    assert "RuntimeError: disk full" in errors[0].traceback
    assert "in fail" in errors[0].traceback
    assert bus.stats.commands_failed == 1


async def test_a_returned_failure_is_published_as_an_error_event(bus: MessageBus) -> None:
    errors = collect(bus, CommandErrorEvent)
    bus.register_command_handler(
        AddCommand, lambda c: CommandResult(success=False, error="no", error_type="Refused")
    )
    result = await bus.execute(AddCommand(a=1, b=1))
    await bus.wait_for_events()
    assert [e.command_result.error for e in errors] == ["no"]
    assert result.success is False


async def test_executing_without_a_handler_raises_a_clear_error(bus: MessageBus) -> None:
    with pytest.raises(HandlerNotFoundError, match=r"No handler is registered for AddCommand"):
        await bus.execute(AddCommand(a=1, b=1))
    assert issubclass(HandlerNotFoundError, LookupError)


async def test_handler_not_found_names_the_module_of_the_type_it_looked_for(
    bus: MessageBus,
) -> None:
    # An AddCommand of another module (the worker's app.AddCommand) is another type.
    with pytest.raises(HandlerNotFoundError, match=rf"\({__name__}\.AddCommand\)"):
        await bus.execute(AddCommand(a=1, b=1))


async def test_a_second_different_handler_raises_value_error(bus: MessageBus) -> None:
    bus.register_command_handler(AddCommand, add)
    with pytest.raises(ValueError, match="AddCommand already has a handler"):
        bus.register_command_handler(AddCommand, add_async)
    with pytest.raises(HandlerAlreadyRegisteredError):
        bus.register_command_handler(AddCommand, lambda c: 0)
    assert (await bus.execute(AddCommand(a=1, b=1))).result == 2


async def test_unregistering_frees_the_command_type(bus: MessageBus) -> None:
    bus.register_command_handler(AddCommand, add)
    assert bus.unregister_command_handler(AddCommand) is True
    assert bus.unregister_command_handler(AddCommand) is False
    bus.register_command_handler(AddCommand, add_async)
    assert (await bus.execute(AddCommand(a=2, b=2))).result == 4


async def test_decorator_registers_and_returns_the_function(bus: MessageBus) -> None:
    @bus.command_handler(AddCommand)
    def double(cmd: AddCommand) -> int:
        return 2 * (cmd.a + cmd.b)

    assert double(AddCommand(a=1, b=0)) == 2
    assert (await bus.execute(AddCommand(a=1, b=2))).result == 6


async def test_timeout_fails_the_command_without_raising(bus: MessageBus) -> None:
    started = asyncio.Event()

    async def hang(cmd: SlowCommand) -> None:
        started.set()
        await asyncio.Event().wait()

    bus.register_command_handler(SlowCommand, hang)
    result = await bus.execute(SlowCommand(seconds=1), timeout=0.01)
    assert started.is_set()
    assert result.success is False
    assert result.error_type == "TimeoutError"
    assert "within 0.01 s" in (result.error or "")


async def test_cancelling_execute_publishes_a_cancelled_error_and_propagates(
    bus: MessageBus,
) -> None:
    errors = collect(bus, CommandErrorEvent)
    started = asyncio.Event()

    async def hang(cmd: SlowCommand) -> None:
        started.set()
        await asyncio.Event().wait()

    bus.register_command_handler(SlowCommand, hang)
    task = asyncio.create_task(bus.execute(SlowCommand(seconds=1)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await bus.wait_for_events()
    assert [e.command_result.error_type for e in errors] == ["CancelledError"]


async def test_execute_rejects_an_event_with_a_hint(bus: MessageBus) -> None:
    with pytest.raises(TypeError, match=r"bus.publish"):
        await bus.execute(Event())  # type: ignore[arg-type]


async def test_execute_works_before_start_and_its_events_wait(tmp_path: Any) -> None:
    bus = MessageBus(log_dir=None, enable_console_traces=False)
    seen = collect(bus, CommandResultEvent)
    bus.register_command_handler(AddCommand, add)
    result = await bus.execute(AddCommand(a=1, b=1))
    assert result.result == 2
    assert seen == []
    await bus.start()
    await bus.wait_for_events()
    await bus.stop()
    assert len(seen) == 1
