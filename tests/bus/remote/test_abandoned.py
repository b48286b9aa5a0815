"""A command its caller gave up on before any worker took it is deleted, and never runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import quiet_bus

from llmgine.bus.remote import RedisServer
from llmgine.bus.remote.caller import ABANDONED
from llmgine.bus.remote.keys import Keys, type_key
from llmgine.messages import Command


class NamedCommand(Command):
    name: str


async def recorded(client: Any, namespace: str) -> list[bytes]:
    """The replies recorded in the namespace (one per execute() call answered or abandoned)."""
    return [await client.get(key) for key in await client.keys(f"{namespace}:result:*")]


@pytest.mark.timeout(120)
async def test_a_command_abandoned_while_it_waited_in_its_stream_never_runs(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    caller, worker = quiet_bus(), quiet_bus()
    started: list[str] = []
    first_running = asyncio.Event()
    release = asyncio.Event()

    async def run(command: NamedCommand) -> str:
        started.append(command.name)
        first_running.set()
        await release.wait()
        return command.name

    worker.register_command_handler(NamedCommand, run)
    try:
        await worker.connect(redis_server.url, namespace, heartbeat=0.2, max_concurrency=1)
        await caller.connect(redis_server.url, namespace, heartbeat=0.2)
        first = asyncio.create_task(caller.execute(NamedCommand(name="a")))
        await asyncio.wait_for(first_running.wait(), timeout=30)
        # The only worker is busy: "b" waits in the stream until its caller gives up.
        given_up = NamedCommand(name="b")
        result = await caller.execute(given_up, timeout=0.3)
        assert result.error_type == "TimeoutError"

        keys = Keys(namespace)
        stream = keys.command(type_key(NamedCommand))
        assert await client.xlen(stream) == 1  # "a" only: "b" was deleted before the result
        assert await recorded(client, namespace) == [ABANDONED]  # "b"'s request

        last = asyncio.create_task(caller.execute(NamedCommand(name="c")))
        release.set()
        assert (await asyncio.wait_for(first, timeout=30)).result == "a"
        assert (await asyncio.wait_for(last, timeout=30)).result == "c"
        assert started == ["a", "c"]
    finally:
        await caller.stop()
        await worker.stop()


@pytest.mark.timeout(120)
async def test_a_command_waiting_when_its_caller_disconnects_never_runs(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    caller, worker, other = quiet_bus(), quiet_bus(), quiet_bus()
    started: list[str] = []
    first_running = asyncio.Event()
    release = asyncio.Event()

    async def run(command: NamedCommand) -> str:
        started.append(command.name)
        first_running.set()
        await release.wait()
        return command.name

    worker.register_command_handler(NamedCommand, run)
    try:
        await worker.connect(redis_server.url, namespace, heartbeat=0.2, max_concurrency=1)
        await caller.connect(redis_server.url, namespace, heartbeat=0.2)
        await other.connect(redis_server.url, namespace, heartbeat=0.2)
        first = asyncio.create_task(caller.execute(NamedCommand(name="a")))
        await asyncio.wait_for(first_running.wait(), timeout=30)
        keys = Keys(namespace)
        stream = keys.command(type_key(NamedCommand))
        [(first_id, _)] = await client.xrange(stream)
        queued = NamedCommand(name="b")
        waiting = asyncio.create_task(caller.execute(queued))
        # Redis answers this read as soon as "b" is added behind "a".
        assert await client.xread({stream: first_id}, count=1, block=30_000)
        await caller.disconnect()
        told = await asyncio.wait_for(waiting, timeout=30)
        assert told.error_type == "ConnectionError"
        assert "no worker starts it later" in (told.error or "")
        # Marked before disconnect() returned (before: by a task that lost its connection).
        # Both requests still waiting: "a" (running; its result will be dropped) and "b".
        assert await recorded(client, namespace) == [ABANDONED, ABANDONED]
        release.set()
        await asyncio.wait_for(first, timeout=30)
        # One worker, one at a time, in stream order: had "b" stayed, it would run before "c".
        assert (await asyncio.wait_for(other.execute(NamedCommand(name="c")), 30)).result == "c"
        assert started == ["a", "c"]
    finally:
        await other.stop()
        await caller.stop()
        await worker.stop()
