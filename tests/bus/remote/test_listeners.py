"""Only events another process handles travel; a process skips, undecoded, what it cannot use."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import remote_app
from support import Collector, quiet_bus

from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer
from llmgine.bus.remote.keys import Keys, type_key
from llmgine.bus.remote.wire import event_field
from llmgine.messages import Command, CommandResultEvent, Event


class DoubleCommand(Command):
    n: int


@pytest.fixture
async def buses(redis_server: RedisServer, namespace: str) -> AsyncIterator[list[MessageBus]]:
    """Three buses: connect them with ``connect(bus)`` once their handlers are registered."""
    made = [quiet_bus() for _ in range(3)]
    yield made
    for bus in made:
        await bus.stop()


@pytest.mark.timeout(60)
async def test_an_execute_puts_none_of_the_bus_own_events_on_the_shared_stream(
    redis_server: RedisServer, namespace: str, client: Any, buses: list[MessageBus]
) -> None:
    caller, worker, monitor = buses
    worker.register_command_handler(DoubleCommand, lambda c: 2 * c.n)
    await worker.connect(redis_server.url, namespace, heartbeat=0.2)
    await caller.connect(redis_server.url, namespace, heartbeat=0.2)
    stream = Keys(namespace).events

    async def last_added() -> Any:
        # The newest id ever added: trimming old entries (the stream's upkeep) leaves it.
        return (await client.xinfo_stream(stream))["last-generated-id"]

    before = await last_added()
    for n in range(5):
        assert (await caller.execute(DoubleCommand(n=n))).result == 2 * n
    await caller.wait_for_events()
    await worker.wait_for_events()
    assert await last_added() == before  # spans and results stayed local
    assert caller.remote is not None and caller.remote.sent == 0

    # A process that hears every event (a handler on the base class) gets them all.
    seen: list[Event] = []
    result_came = asyncio.Event()

    def everything(event: Event) -> None:
        seen.append(event)
        if isinstance(event, CommandResultEvent):  # published by the caller only
            result_came.set()

    monitor.register_event_handler(Event, everything)
    await monitor.connect(redis_server.url, namespace, heartbeat=0.2)
    await asyncio.wait_for(caller.remote.wait_for_listener(remote_app.PingedEvent), timeout=30)
    await caller.execute(DoubleCommand(n=21))
    await asyncio.wait_for(result_came.wait(), timeout=30)
    assert {type(e).__name__ for e in seen} >= {"TraceEvent", "CommandResultEvent"}


@pytest.mark.timeout(60)
async def test_a_process_skips_undecoded_the_events_it_has_no_handler_for(
    redis_server: RedisServer,
    namespace: str,
    client: Any,
    buses: list[MessageBus],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="llmgine.bus.remote")
    sender, pings, echoes = buses
    heard_pings = Collector(expected=4)
    heard_echoes = Collector(expected=3)
    pings.register_event_handler(remote_app.PingedEvent, heard_pings)
    echoes.register_event_handler(remote_app.EchoedEvent, heard_echoes)
    await pings.connect(redis_server.url, namespace)
    await echoes.connect(redis_server.url, namespace)
    await sender.connect(redis_server.url, namespace)
    for n in range(3):
        await sender.publish(remote_app.PingedEvent(n=n))
        await sender.publish(remote_app.EchoedEvent(n=n, worker=0))
    # And an entry of a type nobody here handles, whose envelope would not even decode.
    ghost = event_field(b"ghost", type_key(remote_app.SlowStartedEvent).encode())
    await client.xadd(Keys(namespace).events, {ghost: b"not an envelope"})
    await sender.publish(remote_app.PingedEvent(n=3))
    await asyncio.wait_for(heard_pings.done.wait(), timeout=30)
    await asyncio.wait_for(heard_echoes.done.wait(), timeout=30)
    assert heard_pings.seen == [0, 1, 2, 3]
    assert heard_echoes.seen == [0, 1, 2]
    assert pings.remote is not None and echoes.remote is not None
    assert pings.remote.skipped == 4  # three EchoedEvents and the ghost, never decoded
    assert pings.remote.received == 4
    assert echoes.remote.received == 3
    assert not [r for r in caplog.records if "does not decode" in r.getMessage()]


@pytest.mark.timeout(60)
async def test_a_handler_registered_after_connecting_is_heard_within_a_heartbeat(
    redis_server: RedisServer, namespace: str, buses: list[MessageBus]
) -> None:
    sender, late, _ = buses
    await late.connect(redis_server.url, namespace, heartbeat=0.2)
    await sender.connect(redis_server.url, namespace, heartbeat=0.2)
    assert sender.remote is not None
    assert not sender.remote.listeners.wants(remote_app.PingedEvent)
    await sender.publish(remote_app.PingedEvent(n=-1))  # nobody handles it: it stays here
    await sender.wait_for_events()
    assert sender.remote.sent == 0

    heard = Collector(expected=5)
    late.register_event_handler(remote_app.PingedEvent, heard)
    # The late process announces at its next heartbeat; the sender reads the notice at
    # once (or the hash at its own next heartbeat): within about a heartbeat.
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.wait_for(sender.remote.wait_for_listener(remote_app.PingedEvent), timeout=10)
    learnt_in = loop.time() - start
    for n in range(5):
        await sender.publish(remote_app.PingedEvent(n=n))
    await asyncio.wait_for(heard.done.wait(), timeout=30)
    assert heard.seen == list(range(5))
    assert learnt_in < 10 * 0.2, learnt_in  # bounded by the heartbeat, with slack for a busy CI

    # And when it leaves, the sender stops sending what nobody handles any more.
    await late.disconnect()
    left = sender.remote.listeners.wait_for(remote_app.PingedEvent, handled=False)
    await asyncio.wait_for(left, timeout=10)
    await sender.remote.refresh()
    assert not sender.remote.listeners.wants(remote_app.PingedEvent)


@pytest.mark.timeout(60)
async def test_a_process_that_withdrew_its_handlers_never_announces_them_again(
    redis_server: RedisServer, namespace: str, client: Any, buses: list[MessageBus]
) -> None:
    leaving = buses[0]
    leaving.register_event_handler(remote_app.PingedEvent, Collector(expected=1))
    await leaving.connect(redis_server.url, namespace, heartbeat=0.2)
    link = leaving.remote
    assert link is not None
    listeners_key = Keys(namespace).listeners
    assert await client.hget(listeners_key, link.process_id) is not None
    await link.listeners.withdraw()  # what close() does before it sends what is buffered
    await link.listeners.announce()  # the sender's check before each batch
    pipe = link.redis.pipeline(transaction=False)
    link.listeners.renew(pipe)  # the heartbeat's renewal
    await pipe.execute()
    assert await client.hget(listeners_key, link.process_id) is None


@pytest.mark.timeout(60)
async def test_a_handler_registered_just_before_a_command_hears_what_the_worker_publishes(
    redis_server: RedisServer, namespace: str, buses: list[MessageBus]
) -> None:
    caller, worker, _ = buses

    async def double(command: DoubleCommand) -> int:
        await worker.publish(remote_app.EchoedEvent(n=command.n, worker=0))
        return 2 * command.n

    worker.register_command_handler(DoubleCommand, double)
    await worker.connect(redis_server.url, namespace, heartbeat=5)  # no heartbeat helps
    await caller.connect(redis_server.url, namespace, heartbeat=5)
    for n in range(3):
        heard = Collector(expected=1)
        caller.register_event_handler(remote_app.EchoedEvent, heard)  # announced before sending
        assert (await caller.execute(DoubleCommand(n=n))).result == 2 * n
        await asyncio.wait_for(heard.done.wait(), timeout=30)
        assert heard.seen == [n]
        caller.unregister_event_handler(remote_app.EchoedEvent, heard)
