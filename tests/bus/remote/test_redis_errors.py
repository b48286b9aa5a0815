"""Redis down, a bad URL, garbage on a command stream: llmgine's errors, said once."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from support import quiet_bus

from llmgine.bus.remote import RedisServer
from llmgine.bus.remote.keys import WORKERS, Keys, type_key
from llmgine.errors import ConfigurationError, HandlerNotFoundError, RedisServerError
from llmgine.messages import Command
from llmgine.observability.codec import encode


class TransferCommand(Command):
    amount: int


class UnservedCommand(Command):
    pass


@pytest.mark.timeout(120)
async def test_with_redis_down_execute_fails_with_a_connection_error_logged_once(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer().start()
    caller, worker = quiet_bus(), quiet_bus()
    worker.register_command_handler(TransferCommand, lambda c: c.amount)
    try:
        await worker.connect(server.url, namespace, heartbeat=0.2, stop_timeout=1)
        await caller.connect(server.url, namespace, heartbeat=0.2, stop_timeout=1)
        assert (await caller.execute(TransferCommand(amount=1), timeout=30)).result == 1
        server.stop(kill=True)
        results = []
        with caplog.at_level(logging.WARNING, logger="llmgine.bus.remote"):
            for _ in range(3):
                results.append(await caller.execute(TransferCommand(amount=2)))
                # Past the heartbeat during which who handles the type is cached: the
                # next look-up asks Redis (it raised redis-py's ConnectionError).
                await asyncio.sleep(0.5)
        for result in results:
            assert not result.success
            assert result.error_type == "ConnectionError"
            assert "was not run" in (result.error or "")
        warned = [r for r in caplog.records if "commands for other processes fail" in r.message]
        assert len(warned) == 1
    finally:
        await caller.stop()
        await worker.stop()
        server.close()


@pytest.mark.timeout(60)
async def test_connect_with_a_database_index_redis_lacks_raises_a_configuration_error(
    redis_server: RedisServer,
) -> None:
    bus = quiet_bus()
    url = redis_server.url.rpartition("/")[0] + "/99"
    with pytest.raises(ConfigurationError, match="database index"):
        await bus.connect(url)
    await bus.stop()


@pytest.mark.timeout(60)
async def test_a_password_with_a_hash_is_hidden_and_the_error_says_how_to_write_it() -> None:
    bus = quiet_bus()
    with pytest.raises(ConfigurationError) as raised:
        await bus.connect("redis://:pa#ssWORD@127.0.0.1:1/0")  # '#' cuts the URL short
    assert "ssWORD" not in str(raised.value)
    assert "%23" in str(raised.value)
    await bus.stop()


@pytest.mark.timeout(60)
async def test_a_refused_password_is_said_in_one_sentence_without_a_double_full_stop(
    redis_server: RedisServer,
) -> None:
    bus = quiet_bus()
    host = redis_server.url.partition("://")[2]
    with pytest.raises(ConfigurationError) as raised:
        await bus.connect(f"redis://someone:not-the-password@{host}")
    said = str(raised.value)
    assert "not-the-password" not in said
    assert "Check the user and password" in said
    assert ".." not in said
    await bus.stop()


@pytest.mark.timeout(120)
async def test_a_malformed_entry_on_a_command_stream_is_dropped_once_and_logged_once(
    redis_server: RedisServer, namespace: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    worker = quiet_bus()
    ran: list[int] = []
    worker.register_command_handler(TransferCommand, lambda c: ran.append(c.amount))
    keys = Keys(namespace)
    stream = keys.command(type_key(TransferCommand))
    await client.set(f"{namespace}:not-a-stream", b"x")
    line = encode("command", TransferCommand(amount=7), None)
    try:
        await worker.connect(redis_server.url, namespace, heartbeat=0.2, claim_after=0.3)
        with caplog.at_level(logging.DEBUG, logger="llmgine.bus.remote"):
            # A reply stream that is not one, a version that is not a number, no command.
            await client.xadd(stream, {b"m": line, b"r": f"{namespace}:not-a-stream", b"v": b"x"})
            await client.xadd(stream, {b"r": b"somewhere", b"a": b"1"})
            for _ in range(600):  # polls Redis's own state, bounded (60 s)
                info = await client.xinfo_groups(stream)
                if info[0]["pending"] == 0 and info[0]["last-delivered-id"] != b"0-0":
                    break
                await asyncio.sleep(0.1)
            assert (await client.xpending(stream, WORKERS))["pending"] == 0
            # Several claim_after later, nothing was taken over (retried) either.
            await asyncio.sleep(1.5)
        assert ran == [7]
        assert not [r for r in caplog.records if "Took over" in r.getMessage()]
        assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    finally:
        await worker.stop()


@pytest.mark.timeout(60)
async def test_handler_not_found_names_the_full_type_it_looked_for(
    redis_server: RedisServer, namespace: str
) -> None:
    bus = quiet_bus()
    await bus.connect(redis_server.url, namespace, heartbeat=0.2)
    try:
        with pytest.raises(HandlerNotFoundError, match=rf"{__name__}\.UnservedCommand"):
            await bus.execute(UnservedCommand())
    finally:
        await bus.stop()


@pytest.mark.timeout(60)
def test_a_server_directory_not_made_yet_is_made(tmp_path: Path) -> None:
    folder = tmp_path / "not" / "made" / "yet"
    with RedisServer(directory=folder) as server:
        assert server.pid is not None
        assert (folder / "redis.log").exists()


@pytest.mark.timeout(60)
def test_a_server_directory_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    server = RedisServer(directory=tmp_path / "a-file" / "redis")
    with pytest.raises(RedisServerError, match=r"give RedisServer\(directory=\.\.\.\) a folder"):
        server.start()
    assert server.pid is None
