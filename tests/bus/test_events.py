"""publish(): many handlers, subclass dispatch, order, failure isolation, backpressure."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from llmgine import EventHandlerFailedEvent
from llmgine.bus import MessageBus
from llmgine.messages import Event


class ThingHappenedEvent(Event):
    n: int = 0


class SpecialThingHappenedEvent(ThingHappenedEvent):
    pass


class OtherEvent(Event):
    pass


async def test_every_handler_of_an_event_runs_in_registration_order(bus: MessageBus) -> None:
    calls: list[str] = []

    def first(e: ThingHappenedEvent) -> None:
        calls.append("first")

    async def second(e: ThingHappenedEvent) -> None:
        await asyncio.sleep(0)
        calls.append("second")

    def third(e: ThingHappenedEvent) -> None:
        calls.append("third")

    for handler in (first, second, third):
        bus.register_event_handler(ThingHappenedEvent, handler)
    await bus.publish(ThingHappenedEvent())
    await bus.wait_for_events()
    assert calls == ["first", "second", "third"]


async def test_events_are_handled_in_publish_order(bus: MessageBus) -> None:
    seen: list[int] = []

    async def slow_handler(e: ThingHappenedEvent) -> None:
        await asyncio.sleep(0)
        seen.append(e.n)

    bus.register_event_handler(ThingHappenedEvent, slow_handler)
    for n in range(50):
        await bus.publish(ThingHappenedEvent(n=n))
    await bus.wait_for_events()
    assert seen == list(range(50))


async def test_handlers_match_subclasses(bus: MessageBus) -> None:
    everything: list[Event] = []
    things: list[Event] = []
    special: list[Event] = []
    bus.register_event_handler(Event, everything.append)
    bus.register_event_handler(ThingHappenedEvent, things.append)
    bus.register_event_handler(SpecialThingHappenedEvent, special.append)
    a, b, c = ThingHappenedEvent(), SpecialThingHappenedEvent(), OtherEvent()
    for event in (a, b, c):
        await bus.publish(event)
    await bus.wait_for_events()
    assert everything == [a, b, c]
    assert things == [a, b]
    assert special == [b]


async def test_a_failing_handler_is_isolated_logged_and_published(
    bus: MessageBus, caplog: pytest.LogCaptureFixture
) -> None:
    after: list[int] = []
    failures: list[EventHandlerFailedEvent] = []

    def broken(e: ThingHappenedEvent) -> None:
        raise KeyError("missing")

    bus.register_event_handler(ThingHappenedEvent, broken)
    bus.register_event_handler(ThingHappenedEvent, lambda e: after.append(e.n))
    bus.register_event_handler(EventHandlerFailedEvent, failures.append)
    event = ThingHappenedEvent(n=7)
    with caplog.at_level(logging.ERROR, logger="llmgine.bus.bus"):
        await bus.publish(event)
        await bus.publish(ThingHappenedEvent(n=8))
        await bus.wait_for_events()
    assert after == [7, 8]
    assert len(failures) == 2
    assert failures[0].event_id == event.id
    assert failures[0].event_type == "ThingHappenedEvent"
    assert failures[0].handler.endswith("broken")
    assert failures[0].error_type == "KeyError"
    assert "raise KeyError" in failures[0].traceback
    assert "broken failed on ThingHappenedEvent" in caplog.text
    assert bus.stats.handler_failures == 2


async def test_a_failing_failure_handler_is_only_logged(
    bus: MessageBus, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(e: Event) -> None:
        raise ValueError("always")

    bus.register_event_handler(Event, broken)
    with caplog.at_level(logging.ERROR, logger="llmgine.bus.bus"):
        await bus.publish(OtherEvent())
        await bus.wait_for_events()
    # The OtherEvent handler failed (published), the failure event's handler failed (logged only).
    assert bus.stats.handler_failures == 2
    assert bus.stats.events_published == 2


async def test_re_registering_the_same_function_replaces_it(bus: MessageBus) -> None:
    calls: list[str] = []
    namespace: dict[str, Any] = {"calls": calls, "__name__": "notebook_cell"}
    exec("def on_thing(e):\n    calls.append('v1')", namespace)
    bus.register_event_handler(ThingHappenedEvent, namespace["on_thing"])
    exec("def on_thing(e):\n    calls.append('v2')", namespace)  # the cell runs again
    bus.register_event_handler(ThingHappenedEvent, namespace["on_thing"])
    await bus.publish(ThingHappenedEvent())
    await bus.wait_for_events()
    assert calls == ["v2"]


async def test_lambdas_and_nested_functions_never_replace_each_other(bus: MessageBus) -> None:
    calls: list[int] = []

    def make(n: int) -> Any:
        def nested(e: Event) -> None:
            calls.append(n)

        return nested

    bus.register_event_handler(ThingHappenedEvent, make(1))
    bus.register_event_handler(ThingHappenedEvent, make(2))
    bus.register_event_handler(ThingHappenedEvent, lambda e: calls.append(3))
    bus.register_event_handler(ThingHappenedEvent, lambda e: calls.append(4))
    await bus.publish(ThingHappenedEvent())
    await bus.wait_for_events()
    assert calls == [1, 2, 3, 4]


async def test_unregistering_an_event_handler(bus: MessageBus) -> None:
    seen: list[Event] = []
    handler = seen.append
    bus.register_event_handler(ThingHappenedEvent, handler)
    assert bus.unregister_event_handler(ThingHappenedEvent, handler) is True
    assert bus.unregister_event_handler(ThingHappenedEvent, handler) is False
    await bus.publish(ThingHappenedEvent())
    await bus.wait_for_events()
    assert seen == []


async def test_event_decorator(bus: MessageBus) -> None:
    seen: list[int] = []

    @bus.event_handler(ThingHappenedEvent)
    async def on_thing(e: ThingHappenedEvent) -> None:
        seen.append(e.n)

    await bus.publish(ThingHappenedEvent(n=5))
    await bus.wait_for_events()
    assert seen == [5]


async def test_registering_a_non_event_type_is_a_type_error(bus: MessageBus) -> None:
    with pytest.raises(TypeError, match="Event subclass"):
        bus.register_event_handler(int, print)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        bus.register_event_handler(ThingHappenedEvent, "not a function")  # type: ignore[arg-type]


async def test_publish_rejects_a_command_with_a_hint(bus: MessageBus) -> None:
    from llmgine.messages import Command

    with pytest.raises(TypeError, match=r"bus.execute"):
        await bus.publish(Command())  # type: ignore[arg-type]


async def test_a_full_queue_makes_publishers_wait_for_the_handlers(tmp_path: Any) -> None:
    bus = MessageBus(log_dir=None, max_queue_size=4, enable_console_traces=False)
    gate = asyncio.Event()
    handled: list[int] = []

    async def gated(e: ThingHappenedEvent) -> None:
        await gate.wait()
        handled.append(e.n)

    bus.register_event_handler(ThingHappenedEvent, gated)
    await bus.start()

    async def producer() -> None:
        for n in range(10):
            await bus.publish(ThingHappenedEvent(n=n))

    task = asyncio.create_task(producer())
    for _ in range(20):  # let the producer run until it blocks on the full queue
        await asyncio.sleep(0)
    assert not task.done()
    assert bus.pending_events == 4
    gate.set()
    await task
    await bus.wait_for_events()
    await bus.stop()
    assert handled == list(range(10))


async def test_publishing_from_a_handler_never_deadlocks_on_a_full_queue(tmp_path: Any) -> None:
    bus = MessageBus(log_dir=None, max_queue_size=2, enable_console_traces=False)
    seen: list[int] = []

    async def fan_out(e: ThingHappenedEvent) -> None:
        seen.append(e.n)
        if e.n == 0:
            for n in range(1, 20):
                await bus.publish(ThingHappenedEvent(n=n))

    bus.register_event_handler(ThingHappenedEvent, fan_out)
    async with bus:
        await bus.publish(ThingHappenedEvent(n=0))
        await asyncio.wait_for(bus.wait_for_events(), timeout=5)
    assert seen == list(range(20))


async def test_wait_for_events_from_a_handler_is_refused(bus: MessageBus) -> None:
    from llmgine import BusStateError, EventHandlerFailedEvent

    failures: list[EventHandlerFailedEvent] = []

    async def impatient(e: ThingHappenedEvent) -> None:
        await bus.wait_for_events()

    bus.register_event_handler(ThingHappenedEvent, impatient)
    bus.register_event_handler(EventHandlerFailedEvent, failures.append)
    await bus.publish(ThingHappenedEvent())
    await bus.wait_for_events()
    assert [f.error_type for f in failures] == [BusStateError.__name__]


async def test_publish_refuses_what_is_not_an_event_however_many_events_went_before(
    bus: MessageBus,
) -> None:
    from llmgine.messages import Command

    class DoThingCommand(Command):
        pass

    seen: list[Event] = []
    bus.register_event_handler(Event, seen.append)
    await bus.publish(ThingHappenedEvent(n=1))
    await bus.publish(SpecialThingHappenedEvent(n=2))
    for wrong in (DoThingCommand(), {"n": 3}, "ThingHappenedEvent", None):
        with pytest.raises(TypeError, match=r"publish\(\) takes an Event.*bus\.execute"):
            await bus.publish(wrong)  # type: ignore[arg-type]
    await bus.publish(ThingHappenedEvent(n=4))
    await bus.wait_for_events()
    assert [e.n for e in seen if isinstance(e, ThingHappenedEvent)] == [1, 2, 4]
