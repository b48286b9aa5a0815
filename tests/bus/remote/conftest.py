"""Real worker processes started and killed by pid, beside the session's real Redis server."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer
from llmgine.bus.remote.worker import READY
from llmgine.messages import Event

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # the tests and the workers import remote_app alike


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Any]:
    """A plain redis-py client of the session's server, to look at what the buses left."""
    c = aioredis.Redis.from_url(redis_server.url)
    yield c
    await c.aclose()


@pytest.fixture
def namespace() -> str:
    """A namespace of its own per test: one server, many separate shared buses."""
    return f"t{uuid.uuid4().hex[:8]}"


class Worker:
    """A ``python -m llmgine worker`` process."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.pid = process.pid

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait: the worker drains and exits."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-whatever."""
        self.process.kill()
        self.process.wait(timeout=30)


StartWorker = Callable[..., Worker]


def runs(directory: Path, pattern: str = "[0-9a-f]*") -> int:
    """How many runs completed: one file each in ``directory`` (``BlockingCommand``'s)."""
    return len(list(directory.glob(pattern)))


async def listened(bus: MessageBus, event_type: type[Event]) -> None:
    """Learn now of the workers started so far, which handle ``event_type``.

    A worker announces its handlers before it says it is ready; the caller learns of
    them from its notice or at its next heartbeat, or at once with ``refresh()``.
    """
    assert bus.remote is not None
    await asyncio.wait_for(bus.remote.refresh(), timeout=30)
    assert bus.remote.listeners.wants(event_type)


@pytest.fixture
async def caller(
    tmp_path: Path, redis_server: RedisServer, namespace: str
) -> AsyncIterator[MessageBus]:
    """The calling process's bus (a notebook's, say), connected, logging to tmp_path/logs."""
    bus = MessageBus(
        log_dir=tmp_path / "logs",
        log_filename="caller.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
    )
    await bus.connect(redis_server.url, namespace, heartbeat=0.2)
    yield bus
    await bus.stop()


@pytest.fixture
def start_worker(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> Iterator[StartWorker]:
    started: list[Worker] = []

    def start(
        spec: str = "remote_app:setup",
        *,
        claim_after: float = 30.0,
        max_concurrency: int = 8,
        **options: Any,
    ) -> Worker:
        command = [
            sys.executable, "-m", "llmgine", "worker", spec,
            "--redis", redis_server.url, "--namespace", namespace,
            "--log-dir", str(tmp_path / "logs"),
            "--claim-after", str(claim_after), "--heartbeat", "0.2",
            "--max-concurrency", str(max_concurrency),
        ]  # fmt: skip
        if options:
            # bus.connect() options the command line has no flag for: the same worker,
            # run through run_worker() by a small script.
            options = {
                "claim_after": claim_after, "heartbeat": 0.2,
                "max_concurrency": max_concurrency, **options,
            }  # fmt: skip
            command = [
                sys.executable, str(HERE / "option_worker.py"), spec, redis_server.url,
                namespace, str(tmp_path / "logs"), json.dumps(options),
            ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        with (tmp_path / "workers.err").open("ab") as errors:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=env)
        worker = Worker(process)
        started.append(worker)
        assert process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        line = b""
        while time.monotonic() < deadline and READY.encode() not in line:
            if process.poll() is not None:
                break
            if selector.select(timeout=0.5):
                line = process.stdout.readline()
        selector.close()
        if READY.encode() not in line:
            errors = (tmp_path / "workers.err").read_text(errors="replace")[-3000:]
            raise AssertionError(f"the worker did not start:\n{errors}")
        return worker

    try:
        yield start
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(timeout=30)
            if worker.process.stdout is not None:
                worker.process.stdout.close()
