"""A stalled Redis (SIGSTOP): timeouts mean what they say, and a command told failed never runs."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import remote_app
from conftest import StartWorker
from support import quiet_bus

from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer
from llmgine.errors import SharedBusConnectionError


@contextmanager
def stalled(server: RedisServer) -> Iterator[None]:
    """The server stopped (SIGSTOP) for the block: connections open, nothing answered."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


async def handled(bus: MessageBus) -> None:
    """Wait until the bus sees a worker for SlowCommand again (its advert lapsed in the stall)."""
    assert bus.remote is not None
    for _ in range(600):  # polls Redis's own state, bounded (60 s)
        if await bus.remote.handled_elsewhere(remote_app.SlowCommand, fresh=True):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no worker handles SlowCommand any more")


@pytest.mark.timeout(180)
async def test_a_command_that_timed_out_while_redis_stalled_never_runs_later(
    start_worker: StartWorker, redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    await asyncio.to_thread(start_worker, max_concurrency=1)
    # Who handles a type is cached for a heartbeat: 1.5 s, so the first command below
    # is sent (into the stalled server's socket), and the look-up of the second is not.
    caller = quiet_bus()
    await caller.connect(redis_server.url, namespace, heartbeat=1.5)
    try:
        warm = remote_app.SlowCommand(seconds=0, runs_dir=str(runs))
        assert (await caller.execute(warm, timeout=60)).success
        told_failed = remote_app.SlowCommand(seconds=0, runs_dir=str(runs))
        assert caller.remote is not None
        assert await caller.remote.handled_elsewhere(remote_app.SlowCommand, fresh=True)
        with stalled(redis_server):
            start = time.monotonic()
            result = await caller.execute(told_failed, timeout=2)
            took = time.monotonic() - start
            assert not result.success
            assert result.error_type == "TimeoutError"
            assert took < 5, f"execute(timeout=2) took {took:.1f} s"
            await asyncio.sleep(2)  # the real clock passes the deadline while Redis is stopped
            # Who handles the type is no longer cached: the look-up meets the stall.
            start = time.monotonic()
            looked_up = await caller.execute(
                remote_app.SlowCommand(seconds=0, runs_dir=str(runs)), timeout=1
            )
            took = time.monotonic() - start
            assert (looked_up.error_type, took < 3) == ("TimeoutError", True), looked_up.error
        await asyncio.wait_for(handled(caller), timeout=60)
        # One worker, one command at a time, in stream order: once this one is answered,
        # the worker has dealt with the one before it.
        after = remote_app.SlowCommand(seconds=0, runs_dir=str(runs))
        assert (await asyncio.wait_for(caller.execute(after), timeout=60)).success
        ran = sorted(p.name.partition(".")[0] for p in runs.iterdir())
        assert ran == sorted([str(warm.id), str(after.id)])
        # It did reach Redis when the server resumed, and the worker refused it.
        assert "caller's timeout passed" in worker_log(tmp_path)
    finally:
        await caller.stop()


@pytest.mark.timeout(120)
async def test_a_short_timeout_with_redis_stalled_is_not_stretched_to_the_abandons_second(
    start_worker: StartWorker, redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    await asyncio.to_thread(start_worker)
    caller = quiet_bus()
    await caller.connect(redis_server.url, namespace, heartbeat=5)  # the look-up stays cached
    try:
        warm = remote_app.SlowCommand(seconds=0, runs_dir=str(runs))
        assert (await caller.execute(warm, timeout=60)).success
        with stalled(redis_server):
            start = time.monotonic()
            result = await caller.execute(
                remote_app.SlowCommand(seconds=0, runs_dir=str(runs)), timeout=0.05
            )
            took = time.monotonic() - start
        assert result.error_type == "TimeoutError"
        # The abandon's round trip is awaited no longer than the timeout itself past the
        # deadline (then it finishes in the background), not its full second.
        assert took < 0.8, f"execute(timeout=0.05) took {took:.2f} s"
    finally:
        await caller.stop()


def worker_log(tmp_path: Path) -> str:
    return (tmp_path / "workers.err").read_text(errors="replace")


@pytest.mark.timeout(120)
async def test_stop_with_redis_stalled_ends_within_seconds_and_says_what_it_could_not_do(
    redis_server: RedisServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    bus = quiet_bus()
    await bus.connect(redis_server.url, namespace, heartbeat=0.2)
    with stalled(redis_server):
        start = time.monotonic()
        await bus.stop()
        took = time.monotonic() - start
    assert took < 10, f"stop() took {took:.1f} s"
    assert any("stop_timeout" in r.getMessage() for r in caplog.records)


@pytest.mark.timeout(60)
async def test_connect_to_a_silent_server_fails_within_its_connect_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        bus = quiet_bus()
        start = time.monotonic()
        with pytest.raises(SharedBusConnectionError, match="did not answer within 5 s"):
            await bus.connect(f"redis://127.0.0.1:{port}/0")
        took = time.monotonic() - start
        await bus.stop()
    assert took < 10, f"connect() took {took:.1f} s"
    assert bus.remote is None
