"""bus.session(): scoped registrations and session_id stamping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmgine import (
    CommandResultEvent,
    HandlerAlreadyRegisteredError,
    HandlerNotFoundError,
    current_session_id,
)
from llmgine.bus import MessageBus
from llmgine.messages import Command, Event


class GreetCommand(Command):
    name: str


class GreetedEvent(Event):
    name: str


async def test_session_registrations_are_removed_at_exit(bus: MessageBus) -> None:
    seen: list[GreetedEvent] = []
    async with bus.session("alice") as session:
        session.register_command_handler(GreetCommand, lambda c: f"hi {c.name}")
        session.register_event_handler(GreetedEvent, seen.append)
        assert (await session.execute(GreetCommand(name="a"))).result == "hi a"
        assert [r.session for r in bus.registrations() if r.kind == "command"] == ["alice"]
    with pytest.raises(HandlerNotFoundError):
        await bus.execute(GreetCommand(name="b"))
    await bus.publish(GreetedEvent(name="late"))
    await bus.wait_for_events()
    assert seen == []


async def test_everything_published_in_a_session_carries_its_id(
    bus: MessageBus, read_log: Callable[[Path | None], list[dict[str, Any]]]
) -> None:
    async def greet(cmd: GreetCommand) -> str:
        await bus.publish(GreetedEvent(name=cmd.name))  # published through the bus, inside
        return cmd.name

    bus.register_command_handler(GreetCommand, greet)
    async with bus.session("alice") as session:
        assert current_session_id() == "alice"
        await session.execute(GreetCommand(name="a"))
        await bus.publish(GreetedEvent(name="direct"))
    assert current_session_id() is None
    await bus.execute(GreetCommand(name="outside"))
    await bus.wait_for_events()
    lines = read_log(bus.log_path)
    inside = [line for line in lines if line["session_id"] == "alice"]
    outside = [line for line in lines if line["session_id"] == "global"]
    assert {line["type"] for line in inside} == {
        "GreetCommand",
        "GreetedEvent",
        "CommandResultEvent",
        "TraceEvent",
    }
    assert len(inside) == 6  # command, 2 events, result, span start and end
    assert len(outside) == 5  # command, event, result, span start and end


async def test_session_decorators_and_explicit_publish(bus: MessageBus) -> None:
    results: list[CommandResultEvent] = []
    async with bus.session() as session:
        assert session.session_id.startswith("session-")

        @session.command_handler(GreetCommand)
        def greet(cmd: GreetCommand) -> str:
            return cmd.name

        @session.event_handler(CommandResultEvent)
        def keep(e: CommandResultEvent) -> None:
            results.append(e)

        await session.execute(GreetCommand(name="x"))
        await bus.wait_for_events()
    assert [r.session_id for r in results] == [session.session_id]
    assert bus.registrations() == [r for r in bus.registrations() if r.session is None]


async def test_handlers_run_in_the_session_of_their_event(bus: MessageBus) -> None:
    cascaded: list[GreetedEvent] = []

    class EchoedEvent(Event):
        pass

    async def echo(e: GreetedEvent) -> None:
        await bus.publish(EchoedEvent())

    bus.register_event_handler(GreetedEvent, echo)
    bus.register_event_handler(EchoedEvent, cascaded.append)
    async with bus.session("bob") as session:
        await session.publish(GreetedEvent(name="b"))
    await bus.wait_for_events()
    assert [e.session_id for e in cascaded] == ["bob"]


async def test_a_session_overrides_a_bus_command_handler_with_replace_and_gives_it_back(
    bus: MessageBus,
) -> None:
    def bus_greets(command: GreetCommand) -> str:
        return f"bus greets {command.name}"

    def alice_greets(command: GreetCommand) -> str:
        return f"alice greets {command.name}"

    bus.register_command_handler(GreetCommand, bus_greets)
    async with bus.session("alice") as session:
        with pytest.raises(HandlerAlreadyRegisteredError, match="replace=True"):
            session.register_command_handler(GreetCommand, alice_greets)
        session.register_command_handler(GreetCommand, alice_greets, replace=True)
        assert (await session.execute(GreetCommand(name="a"))).result == "alice greets a"
    assert (await bus.execute(GreetCommand(name="b"))).result == "bus greets b"
