"""Redis restarting without its data, and Redis away long enough for the local buffer to overflow.

Each test restarts a server of its own, so the session's shared server is left alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import remote_app
from conftest import StartWorker
from support import Collector, quiet_bus

from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer
from llmgine.errors import HandlerNotFoundError
from llmgine.messages import Command


class HoldCommand(Command):
    """Runs until the test lets it finish."""


class TripleCommand(Command):
    n: int


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A server of this test's own, to stop and restart."""
    with RedisServer() as own:
        yield own


@pytest.fixture
async def pair() -> AsyncIterator[tuple[MessageBus, MessageBus]]:
    """A caller's bus and a worker's bus, in this process; connect them in the test."""
    caller, worker = quiet_bus(), quiet_bus()
    yield caller, worker
    await caller.stop()
    await worker.stop()


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.mark.timeout(120)
async def test_after_redis_loses_its_data_both_join_again_and_events_sent_meanwhile_arrive(
    server: RedisServer,
    pair: tuple[MessageBus, MessageBus],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="llmgine.bus.remote")
    sender, receiver = pair
    heard = Collector(expected=21)
    receiver.register_event_handler(remote_app.PingedEvent, heard)
    receiver.register_command_handler(TripleCommand, lambda c: 3 * c.n)
    await receiver.connect(server.url, "lost", heartbeat=0.1)
    await sender.connect(server.url, "lost", heartbeat=0.1)
    await sender.publish(remote_app.PingedEvent(n=0))
    assert (await sender.execute(TripleCommand(n=1))).result == 3

    await asyncio.to_thread(server.stop)
    for n in range(1, 21):
        await sender.publish(remote_app.PingedEvent(n=n))  # accepted while Redis is down
    await asyncio.to_thread(server.restart, keep_data=False)

    await asyncio.wait_for(heard.done.wait(), timeout=60)
    assert heard.seen == list(range(21))
    # Handlers advertised again, command groups made again: commands run as before.
    result = await asyncio.wait_for(sender.execute(TripleCommand(n=5)), timeout=60)
    assert result.success, result.error
    assert result.result == 15
    assert receiver.remote is not None and receiver.remote.data_losses == 1
    assert len(messages(caplog, "lost its data")) >= 1


@pytest.mark.timeout(120)
async def test_a_command_in_flight_when_redis_loses_its_data_fails_at_once_and_clearly(
    server: RedisServer, pair: tuple[MessageBus, MessageBus]
) -> None:
    caller, worker = pair
    started: list[str] = []
    running = asyncio.Event()
    release = asyncio.Event()

    async def hold(command: HoldCommand) -> str:
        started.append(str(command.id))
        running.set()
        await release.wait()
        return "done"

    worker.register_command_handler(HoldCommand, hold)
    await worker.connect(server.url, "inflight", heartbeat=0.1)
    await caller.connect(server.url, "inflight", heartbeat=0.1)
    pending = asyncio.create_task(caller.execute(HoldCommand()))  # no timeout: never hangs
    await asyncio.wait_for(running.wait(), timeout=30)

    await asyncio.to_thread(server.restart, keep_data=False)
    result = await asyncio.wait_for(pending, timeout=30)
    assert not result.success
    assert result.error_type == "ConnectionError"
    assert "lost its data" in (result.error or "")
    assert "not sent again" in (result.error or "")

    release.set()  # the worker finishes its run: it is not answered, and not run again
    assert worker.remote is not None
    await asyncio.wait_for(worker.remote.runner.drain(), timeout=30)
    assert len(started) == 1
    after = await asyncio.wait_for(caller.execute(HoldCommand()), timeout=60)
    assert after.success, after.error
    assert after.result == "done"
    assert len(started) == 2


@pytest.mark.timeout(120)
async def test_an_overflowing_buffer_drops_the_oldest_and_says_so_once_then_counts(
    server: RedisServer,
    pair: tuple[MessageBus, MessageBus],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="llmgine.bus.remote")
    sender, receiver = pair
    heard = Collector(expected=10)
    receiver.register_event_handler(remote_app.PingedEvent, heard)
    await receiver.connect(server.url, "overflow", heartbeat=0.1)
    await sender.connect(server.url, "overflow", heartbeat=0.1, max_buffer=10)
    assert sender.remote is not None

    await asyncio.to_thread(server.stop)
    for n in range(25):
        await sender.publish(remote_app.PingedEvent(n=n))
    assert sender.remote.dropped == 15
    full = messages(caplog, "buffer of 10 events is full")
    assert len(full) == 1  # once for the whole run of drops, not once per event
    await asyncio.to_thread(server.start)

    await asyncio.wait_for(heard.done.wait(), timeout=60)
    assert await sender.remote.flush(timeout=30)
    assert heard.seen == list(range(15, 25))  # the newest ten, in order
    back = messages(caplog, "takes events again")
    assert len(back) == 1
    assert "15 events were dropped" in back[0]


@pytest.fixture
def redis_server(server: RedisServer) -> RedisServer:
    """Workers started here (``start_worker``) use this test's own server."""
    return server


@pytest.mark.timeout(120)
async def test_a_command_sent_just_after_redis_lost_its_data_waits_for_a_worker_to_join_again(
    server: RedisServer, start_worker: StartWorker, namespace: str
) -> None:
    caller = quiet_bus()
    await caller.connect(server.url, namespace, heartbeat=0.5)
    worker = await asyncio.to_thread(start_worker)
    first = await asyncio.wait_for(caller.execute(remote_app.AddCommand(a=1, b=2)), timeout=60)
    assert first.result == 3
    os.kill(worker.pid, signal.SIGSTOP)  # it cannot notice the loss nor advertise again
    try:
        await asyncio.to_thread(server.restart, keep_data=False)
        assert caller.remote is not None
        for _ in range(1200):  # the caller notices at its next heartbeats; bounded
            if caller.remote.data_losses:
                break
            await asyncio.sleep(0.05)
        assert caller.remote.data_losses == 1
        # Past a heartbeat: the caller no longer counts on its last look at the adverts.
        await asyncio.sleep(0.7)
        asyncio.get_running_loop().call_later(0.3, os.kill, worker.pid, signal.SIGCONT)
        # No handler is advertised now: within a few heartbeats of the loss the command
        # waits for the worker to join again instead of failing with HandlerNotFoundError.
        result = await asyncio.wait_for(caller.execute(remote_app.AddCommand(a=2, b=3)), 60)
    finally:
        os.kill(worker.pid, signal.SIGCONT)
        await caller.stop()
    assert result.success, result.error
    assert result.result == 5


async def test_with_no_recent_loss_of_data_a_missing_handler_fails_at_once(
    server: RedisServer, pair: tuple[MessageBus, MessageBus]
) -> None:
    caller, _ = pair
    await caller.connect(server.url, "nobody", heartbeat=5.0)
    with pytest.raises(HandlerNotFoundError):
        await asyncio.wait_for(caller.execute(TripleCommand(n=1)), timeout=2)
