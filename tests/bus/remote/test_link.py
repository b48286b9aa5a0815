"""The link in one process: Redis restarting, bounded streams, a light ``import llmgine``."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from typing import Any

import pytest
import remote_app
from support import Collector, quiet_bus

from llmgine.bus.remote import RedisServer
from llmgine.bus.remote.keys import Keys, redact


def test_import_llmgine_does_not_import_redis() -> None:
    code = "import llmgine, sys; assert 'redis' not in sys.modules, 'redis imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_urls_in_logs_lose_their_password() -> None:
    assert redact("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact("redis://:s3cret@host/0") == "redis://***@host/0"
    assert redact("redis://host:6379/0") == "redis://host:6379/0"


@pytest.mark.timeout(60)
async def test_connecting_to_no_server_fails_clearly() -> None:
    bus = quiet_bus()
    with pytest.raises(ConnectionError, match="is the server running"):
        await bus.connect("redis://:pw@127.0.0.1:1/0")
    assert bus.remote is None
    await bus.stop()


@pytest.mark.timeout(120)
async def test_after_redis_restarts_the_bus_reconnects_and_sends_what_it_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="llmgine.bus.remote")
    with RedisServer() as server:
        sender, receiver = quiet_bus(), quiet_bus()
        collect = Collector(expected=21)
        receiver.register_event_handler(remote_app.PingedEvent, collect)
        await receiver.connect(server.url, "restart", heartbeat=0.1)
        await sender.connect(server.url, "restart", heartbeat=0.1)
        await sender.publish(remote_app.PingedEvent(n=0))
        await asyncio.to_thread(server.stop)
        for n in range(1, 21):
            await sender.publish(remote_app.PingedEvent(n=n))  # accepted while Redis is down
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(collect.done.wait(), timeout=60)
        await sender.stop()
        await receiver.stop()
    assert collect.seen == list(range(21))
    messages = [r.getMessage() for r in caplog.records]
    assert any("Lost the connection to Redis" in m for m in messages)
    assert any("Reconnected to Redis" in m for m in messages)
    assert all("pw" not in m for m in messages)


@pytest.mark.timeout(120)
async def test_trimming_bounds_the_stream_but_keeps_what_a_live_consumer_has_not_read(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    keys = Keys(namespace)
    sender, receiver = quiet_bus(), quiet_bus()
    collect = Collector(expected=2000)
    receiver.register_event_handler(remote_app.PingedEvent, collect)
    await receiver.connect(redis_server.url, namespace)
    await sender.connect(redis_server.url, namespace)
    for n in range(2000):
        await sender.publish(remote_app.PingedEvent(n=n))
    await asyncio.wait_for(collect.done.wait(), timeout=60)
    await sender.wait_for_events()
    # A dead process's group (no heartbeat key) does not hold trimming back.
    await client.xgroup_create(keys.events, keys.event_group("ghost"), id="0")
    assert sender.remote is not None
    await sender.remote.trim()
    assert await client.xlen(keys.events) <= 2
    assert keys.event_group("ghost").encode() not in {
        g["name"] for g in await client.xinfo_groups(keys.events)
    }

    # A live process that has read nothing yet holds it back.
    collect.expected += 100  # before publishing: they may all arrive within the next await
    collect.done.clear()
    for n in range(100):
        await sender.publish(remote_app.PingedEvent(n=n))
    await client.set(keys.process("slow"), b"1", ex=60)
    await client.xgroup_create(keys.events, keys.event_group("slow"), id="0")
    await asyncio.wait_for(collect.done.wait(), timeout=60)
    await sender.remote.trim()
    assert await client.xlen(keys.events) >= 100
    await sender.stop()
    await receiver.stop()


@pytest.mark.timeout(120)
async def test_a_batch_sent_again_after_its_reply_was_lost_arrives_once(
    redis_server: RedisServer, namespace: str
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    sender, receiver = quiet_bus(), quiet_bus()
    collect = Collector(expected=30)
    receiver.register_event_handler(remote_app.PingedEvent, collect)
    await receiver.connect(redis_server.url, namespace, heartbeat=0.2)
    await sender.connect(redis_server.url, namespace, heartbeat=0.2)
    assert sender.remote is not None
    channel = sender.remote.events
    script = channel._send
    lost = 0

    async def reply_lost_once(keys: Any, args: Any) -> Any:
        nonlocal lost
        answer = await script(keys, args)  # the batch reaches Redis...
        if lost == 0:
            lost += 1
            raise RedisConnectionError("connection reset")  # ...and its reply does not
        return answer

    channel._send = reply_lost_once
    try:
        for n in range(30):
            await sender.publish(remote_app.PingedEvent(n=n))
        await asyncio.wait_for(collect.done.wait(), timeout=60)
        assert await asyncio.wait_for(sender.remote.flush(), timeout=60)
        # A marker read back through the stream: nothing more than the 30 comes after it.
        collect.expected += 1
        collect.done.clear()
        await sender.publish(remote_app.PingedEvent(n=-1))
        await asyncio.wait_for(collect.done.wait(), timeout=60)
        await receiver.wait_for_events()
    finally:
        await sender.stop()
        await receiver.stop()
    assert lost == 1
    assert collect.seen == [*range(30), -1]  # before: the lost batch's events twice


@pytest.mark.timeout(60)
async def test_a_handler_registered_after_connecting_is_served_without_a_false_alarm(
    redis_server: RedisServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As `%llmgine connect` then `%llmgine chat` do: connect first, then add an engine."""
    caplog.set_level(logging.WARNING, logger="llmgine.bus.remote")
    worker, caller = quiet_bus(), quiet_bus()
    await caller.connect(redis_server.url, namespace, heartbeat=0.1)

    async def add(command: remote_app.AddCommand) -> int:
        return command.a + command.b

    await worker.connect(redis_server.url, namespace, heartbeat=0.1)
    worker.register_command_handler(remote_app.AddCommand, add)  # before its first read
    assert caller.remote is not None
    for _ in range(600):  # polls Redis's own state: the worker's advert
        if await caller.remote.handled_elsewhere(remote_app.AddCommand, fresh=True):
            break
        await asyncio.sleep(0.05)
    result = await caller.execute(remote_app.AddCommand(a=2, b=3), timeout=30)
    await worker.stop()
    await caller.stop()
    assert (result.success, result.result) == (True, 5), result.error
    alarms = [r.getMessage() for r in caplog.records if "was gone" in r.getMessage()]
    assert alarms == []
