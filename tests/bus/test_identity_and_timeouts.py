"""Handlers keep their identity; sessions give back what they took; timeouts mean what they say."""

from __future__ import annotations

import asyncio
import threading

import pytest

from llmgine import BusStateError, LLMEngine, ScriptedProvider
from llmgine.bus import MessageBus
from llmgine.messages import Command, Event


class SeenEvent(Event):
    n: int = 0


class WorkCommand(Command):
    pass


class Listener:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_seen(self, event: SeenEvent) -> None:
        self.seen.append(event.n)


def quiet() -> MessageBus:
    return MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)


async def test_bound_methods_of_two_instances_are_two_handlers() -> None:
    bus = quiet()
    first, second = Listener(), Listener()
    bus.register_event_handler(SeenEvent, first.on_seen)
    bus.register_event_handler(SeenEvent, second.on_seen)
    async with bus:
        await bus.publish(SeenEvent(n=1))
        await bus.wait_for_events()
    assert first.seen == [1] and second.seen == [1]
    assert len(bus.registrations()) == 2


async def test_a_second_engine_replaces_the_first_loudly(caplog: pytest.LogCaptureFixture) -> None:
    bus = quiet()
    first = LLMEngine(bus, provider=ScriptedProvider(["from the first"]))
    second = LLMEngine(bus, provider=ScriptedProvider(["from the second"]))
    assert "second LLMEngine" in caplog.text
    async with bus:
        assert await second.chat("hi") == "from the second"
        with pytest.raises(BusStateError, match="another LLMEngine replaced it"):
            await first.chat("hi")
        with pytest.raises(BusStateError, match="another LLMEngine replaced it"):
            async for _ in first.stream("hi"):
                pass


async def test_a_sessions_own_handlers_hear_what_is_published_inside_it() -> None:
    bus = quiet()
    heard: list[int] = []
    async with bus:
        async with bus.session("s1") as session:
            session.register_event_handler(SeenEvent, lambda e: heard.append(e.n))
            await session.publish(SeenEvent(n=1))
            await bus.publish(SeenEvent(n=2))
        await bus.publish(SeenEvent(n=3))  # after the session: not heard
        await bus.wait_for_events()
    assert heard == [1, 2]


async def test_a_session_gives_back_the_registration_it_overrode() -> None:
    bus = quiet()
    listener = Listener()
    bus.register_event_handler(SeenEvent, listener.on_seen)
    bus.register_command_handler(WorkCommand, lambda c: "bus")
    async with bus:
        async with bus.session("s1") as session:
            session.register_event_handler(SeenEvent, listener.on_seen)  # the same function
            await session.publish(SeenEvent(n=1))
        await bus.publish(SeenEvent(n=2))
        await bus.wait_for_events()
        assert (await bus.execute(WorkCommand())).result == "bus"
    assert listener.seen == [1, 2]
    assert [r.session for r in bus.registrations()] == [None, None]


class SlowCommand(Command):
    pass


async def test_a_timeout_holds_for_a_sync_handler() -> None:
    bus = quiet()
    release = threading.Event()

    def blocks(command: SlowCommand) -> str:
        release.wait(timeout=60)  # stands for slow sync work; released by the test
        return "late"

    bus.register_command_handler(SlowCommand, blocks)
    async with bus:
        try:
            result = await asyncio.wait_for(bus.execute(SlowCommand(), timeout=0.2), 30)
        finally:
            release.set()
    assert not result.success
    assert result.error_type == "TimeoutError"
    assert result.error == "the handler did not finish within 0.2 s"


async def test_a_handlers_own_timeout_error_is_reported_as_its_own() -> None:
    bus = quiet()

    async def upstream_timeout(command: WorkCommand) -> None:
        raise TimeoutError("the upstream service timed out")

    bus.register_command_handler(WorkCommand, upstream_timeout)
    async with bus:
        result = await bus.execute(WorkCommand(), timeout=30)
    assert result.error_type == "TimeoutError"
    assert result.error == "the upstream service timed out"


async def test_a_sync_handler_with_a_timeout_sees_its_span_and_session() -> None:
    bus = quiet()
    from llmgine import current_session_id, current_span

    seen: list[object] = []

    def look(command: WorkCommand) -> None:
        seen.extend([current_session_id(), current_span() is not None])

    bus.register_command_handler(WorkCommand, look)
    async with bus:
        result = await bus.execute(WorkCommand(session_id="s9"), timeout=10)
    assert result.success
    assert seen == ["s9", True]
