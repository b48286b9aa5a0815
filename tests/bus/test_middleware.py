"""Middleware: code run around every command's handler, first added outermost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmgine import CommandErrorEvent, CommandResultEvent
from llmgine.bus import MessageBus
from llmgine.bus.middleware import CallNext
from llmgine.messages import Command, CommandResult


class AddCommand(Command):
    a: int
    b: int


class SlowCommand(Command):
    seconds: float


class FailCommand(Command):
    pass


def add(cmd: AddCommand) -> int:
    return cmd.a + cmd.b


async def slow(cmd: SlowCommand) -> str:
    await asyncio.sleep(cmd.seconds)
    return "done"


def fail(cmd: FailCommand) -> None:
    raise KeyError("no such row")


def recorder(name: str, trail: list[str]) -> Any:
    async def mw(command: Command, call_next: CallNext) -> CommandResult:
        trail.append(f"{name} in")
        result = await call_next(command)
        trail.append(f"{name} out")
        return result

    return mw


async def test_middleware_runs_around_the_handler_first_added_outermost(bus: MessageBus) -> None:
    trail: list[str] = []

    def handler(cmd: AddCommand) -> int:
        trail.append("handler")
        return cmd.a + cmd.b

    bus.register_command_handler(AddCommand, handler)
    bus.add_middleware(recorder("outer", trail))
    bus.add_middleware(recorder("inner", trail))
    result = await bus.execute(AddCommand(a=1, b=2))
    assert result.success and result.result == 3
    assert trail == ["outer in", "inner in", "handler", "inner out", "outer out"]


async def test_a_removed_middleware_no_longer_runs(bus: MessageBus) -> None:
    trail: list[str] = []
    mw = recorder("mw", trail)
    bus.register_command_handler(AddCommand, add)
    bus.add_middleware(mw)
    assert bus.remove_middleware(mw) is True
    assert bus.remove_middleware(mw) is False
    assert (await bus.execute(AddCommand(a=1, b=1))).result == 2
    assert trail == []


async def test_a_middleware_may_answer_without_calling_the_handler(bus: MessageBus) -> None:
    ran: list[Command] = []
    seen: list[Any] = []
    bus.register_event_handler(CommandErrorEvent, seen.append)

    async def deny(command: Command, call_next: CallNext) -> CommandResult:
        return CommandResult(success=False, error="not allowed", error_type="PermissionError")

    bus.register_command_handler(AddCommand, ran.append)
    bus.add_middleware(deny)
    command = AddCommand(a=1, b=1)
    result = await bus.execute(command)
    await bus.wait_for_events()
    assert ran == []
    assert (result.success, result.error, result.error_type) == (
        False,
        "not allowed",
        "PermissionError",
    )
    assert result.command_id == command.id
    assert result.command_type == "AddCommand"
    assert [event.command_result for event in seen] == [result]


async def test_a_middleware_may_change_the_result(bus: MessageBus) -> None:
    async def double(command: Command, call_next: CallNext) -> CommandResult:
        result = await call_next(command)
        result.result *= 2
        return result

    bus.register_command_handler(AddCommand, add)
    bus.add_middleware(double)
    assert (await bus.execute(AddCommand(a=2, b=3))).result == 10


async def test_a_raising_middleware_gives_a_failed_result_and_an_error_event(
    bus: MessageBus,
) -> None:
    seen: list[Any] = []
    bus.register_event_handler(CommandErrorEvent, seen.append)

    async def broken(command: Command, call_next: CallNext) -> CommandResult:
        raise PermissionError("token expired")

    bus.register_command_handler(AddCommand, add)
    bus.add_middleware(broken)
    result = await bus.execute(AddCommand(a=1, b=1))
    await bus.wait_for_events()
    assert (result.success, result.error, result.error_type) == (
        False,
        "token expired",
        "PermissionError",
    )
    assert len(seen) == 1
    assert "token expired" in seen[0].traceback
    assert bus.stats.commands_failed == 1


async def test_a_middleware_that_returns_no_result_gives_a_failed_result(bus: MessageBus) -> None:
    async def forgetful(command: Command, call_next: CallNext) -> Any:
        await call_next(command)  # and forgets to return it

    bus.register_command_handler(AddCommand, add)
    bus.add_middleware(forgetful)
    result = await bus.execute(AddCommand(a=1, b=1))
    assert not result.success
    assert result.error_type == "TypeError"
    assert "forgetful" in (result.error or "")


async def test_a_middleware_that_forgets_to_await_call_next_is_told_to_await_it(
    bus: MessageBus,
) -> None:
    ran: list[int] = []

    async def counted(command: AddCommand) -> int:
        ran.append(1)
        return command.a + command.b

    async def hasty(command: Command, call_next: CallNext) -> Any:
        return call_next(command)  # the coroutine, not its result

    bus.register_command_handler(AddCommand, counted)
    bus.add_middleware(hasty)
    result = await bus.execute(AddCommand(a=1, b=1))  # warnings are errors: none "never awaited"
    assert not result.success
    assert result.error_type == "TypeError"
    assert "return await call_next(command)" in (result.error or "")
    assert ran == []  # the handler's coroutine was closed, never run


async def test_a_handler_failure_reaches_the_middleware_as_a_failed_result(
    bus: MessageBus,
) -> None:
    seen: list[CommandResult] = []
    errors: list[Any] = []
    bus.register_event_handler(CommandErrorEvent, errors.append)

    async def watch(command: Command, call_next: CallNext) -> CommandResult:
        result = await call_next(command)
        seen.append(result)
        return result

    bus.register_command_handler(FailCommand, fail)
    bus.add_middleware(watch)
    result = await bus.execute(FailCommand())
    await bus.wait_for_events()
    assert seen == [result]
    assert (result.success, result.error_type) == (False, "KeyError")
    assert len(errors) == 1
    assert "raise KeyError" in errors[0].traceback  # the handler's own traceback


async def test_a_middleware_may_retry_the_handler(bus: MessageBus) -> None:
    calls: list[int] = []

    def flaky(cmd: AddCommand) -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return cmd.a + cmd.b

    async def retry(command: Command, call_next: CallNext) -> CommandResult:
        for _ in range(4):
            result = await call_next(command)
            if result.success:
                break
        return result

    bus.register_command_handler(AddCommand, flaky)
    bus.add_middleware(retry)
    result = await bus.execute(AddCommand(a=1, b=1))
    assert (result.success, result.result, len(calls)) == (True, 2, 3)


@pytest.mark.timeout(30)
async def test_execute_timeout_still_bounds_the_handler_inside_middleware(
    bus: MessageBus,
) -> None:
    trail: list[str] = []
    bus.register_command_handler(SlowCommand, slow)
    bus.add_middleware(recorder("mw", trail))
    result = await bus.execute(SlowCommand(seconds=30), timeout=0.1)
    assert (result.success, result.error_type) == (False, "TimeoutError")
    assert trail == ["mw in", "mw out"]  # the middleware saw the timed-out result


async def test_middleware_sees_commands_executed_in_sessions(bus: MessageBus) -> None:
    seen: list[str] = []

    async def sessions(command: Command, call_next: CallNext) -> CommandResult:
        seen.append(command.session_id)
        return await call_next(command)

    bus.add_middleware(sessions)
    async with bus.session("s1") as session:
        session.register_command_handler(AddCommand, add)
        assert (await session.execute(AddCommand(a=1, b=1))).result == 2
        assert (await bus.execute(AddCommand(a=2, b=2))).result == 4
    bus.register_command_handler(AddCommand, add)
    assert (await bus.execute(AddCommand(a=3, b=3))).result == 6
    assert seen == ["s1", "s1", "global"]


async def test_a_successful_result_from_middleware_is_one_result_event(bus: MessageBus) -> None:
    seen: list[Any] = []
    bus.register_event_handler(CommandResultEvent, seen.append)

    async def cached(command: Command, call_next: CallNext) -> CommandResult:
        return CommandResult(success=True, result="cached")

    bus.register_command_handler(AddCommand, add)
    bus.add_middleware(cached)
    result = await bus.execute(AddCommand(a=1, b=1))
    await bus.wait_for_events()
    assert result.result == "cached"
    assert [event.command_result for event in seen] == [result]


def test_add_middleware_refuses_what_is_not_callable(bus: MessageBus) -> None:
    with pytest.raises(TypeError, match="callable"):
        bus.add_middleware("timing")  # type: ignore[arg-type]


@pytest.mark.timeout(30)
async def test_cancelling_the_caller_propagates_through_middleware(bus: MessageBus) -> None:
    trail: list[str] = []
    errors: list[Any] = []
    bus.register_event_handler(CommandErrorEvent, errors.append)
    started = asyncio.Event()

    async def hang(cmd: SlowCommand) -> None:
        started.set()
        await asyncio.sleep(cmd.seconds)

    bus.register_command_handler(SlowCommand, hang)
    bus.add_middleware(recorder("mw", trail))
    task = asyncio.create_task(bus.execute(SlowCommand(seconds=30)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await bus.wait_for_events()
    assert trail == ["mw in"]  # the handler's cancellation went through, not a result
    assert [event.command_result.error for event in errors] == ["the command was cancelled"]


async def test_an_inner_middleware_that_raises_reaches_the_outer_one_as_a_failed_result(
    bus: MessageBus,
) -> None:
    seen: list[CommandErrorEvent] = []
    bus.register_event_handler(CommandErrorEvent, seen.append)
    outer_saw: list[CommandResult] = []

    async def timing(command: Command, call_next: CallNext) -> CommandResult:
        result = await call_next(command)  # never raises for what runs inside it
        outer_saw.append(result)
        return result

    async def broken(command: Command, call_next: CallNext) -> CommandResult:
        raise PermissionError("token expired")

    bus.register_command_handler(AddCommand, add)
    bus.add_middleware(timing)
    bus.add_middleware(broken)
    result = await bus.execute(AddCommand(a=1, b=1))
    await bus.wait_for_events()
    assert [(r.success, r.error_type) for r in outer_saw] == [(False, "PermissionError")]
    assert (result.success, result.error) == (False, "token expired")
    assert len(seen) == 1 and "token expired" in seen[0].traceback


async def test_call_next_refuses_a_command_of_another_type(bus: MessageBus) -> None:
    ran: list[Command] = []

    def record(command: Command) -> str:
        ran.append(command)
        return "ran"

    async def swap(command: Command, call_next: CallNext) -> CommandResult:
        if isinstance(command, AddCommand):
            return await call_next(FailCommand())
        return await call_next(command)

    bus.register_command_handler(AddCommand, record)
    bus.register_command_handler(FailCommand, record)
    bus.add_middleware(swap)
    result = await bus.execute(AddCommand(a=1, b=2))
    assert (result.success, result.error_type) == (False, "TypeError")
    assert (
        "passed a FailCommand to call_next, but this chain ends in the handler of AddCommand"
        in (result.error or "")
    )
    assert ran == []  # no handler ran a command it was not registered for
    changed = await bus.execute(FailCommand())
    assert (changed.success, changed.result) == (True, "ran")


async def test_call_next_takes_a_changed_copy_of_the_command(bus: MessageBus) -> None:
    async def double_a(command: Command, call_next: CallNext) -> CommandResult:
        assert isinstance(command, AddCommand)
        return await call_next(command.model_copy(update={"a": command.a * 2}))

    bus.register_command_handler(AddCommand, add)
    bus.add_middleware(double_a)
    assert (await bus.execute(AddCommand(a=2, b=1))).result == 5
