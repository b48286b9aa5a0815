"""``python -m llmgine worker`` as a user runs it: the URL from the environment, signals."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import remote_app

from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer
from llmgine.bus.remote.worker import READY

HERE = Path(__file__).parent


class WorkerProcess:
    """A worker started with its Redis URL in ``LLMGINE_REDIS_URL``; its output read by threads."""

    def __init__(self, url: str, namespace: str) -> None:
        env = {
            **os.environ,
            "LLMGINE_REDIS_URL": url,
            "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]),
        }
        command = [sys.executable, "-m", "llmgine", "worker", "remote_app:setup"]
        command += ["--namespace", namespace, "--heartbeat", "0.2", "--claim-after", "30"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.changed = threading.Condition()
        self.readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream: IO[bytes], lines: list[str]) -> None:
        for line in stream:
            with self.changed:
                lines.append(line.decode(errors="replace"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, text: str, *, stdout: bool = False, timeout: float = 60) -> str:
        """The first line holding ``text``, once written; fails if the process exits first."""
        lines = self.out if stdout else self.err
        deadline = time.monotonic() + timeout
        with self.changed:
            while time.monotonic() < deadline:
                found = [line for line in lines if text in line]
                if found:
                    return found[0]
                if self.process.poll() is not None and not any(r.is_alive() for r in self.readers):
                    break
                self.changed.wait(timeout=0.5)
        raise AssertionError(f"no line with {text!r}: {''.join(self.err)}")

    def stderr(self) -> str:
        """All of stderr, once the process exited."""
        for reader in self.readers:
            reader.join(timeout=30)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return "".join(self.err)


@pytest.fixture
def worker_processes() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
        worker.process.wait(timeout=30)
        worker.stderr()


@pytest.mark.timeout(180)
async def test_a_worker_takes_its_redis_url_from_the_environment_out_of_ps(
    caller: MessageBus,
    redis_server: RedisServer,
    namespace: str,
    worker_processes: list[WorkerProcess],
) -> None:
    worker = WorkerProcess(redis_server.url, namespace)
    worker_processes.append(worker)
    await asyncio.to_thread(worker.wait_for, READY, stdout=True)
    cmdline = Path(f"/proc/{worker.process.pid}/cmdline")
    argv = (await asyncio.to_thread(cmdline.read_bytes)).split(b"\0")
    assert b"remote_app:setup" in argv
    assert not any(b"redis" in arg for arg in argv)  # nothing of the URL in ps
    result = await caller.execute(remote_app.AddCommand(a=2, b=3), timeout=60)
    assert result.success, result.error
    assert result.result == 5
    worker.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.process.wait, 60) == 0


@pytest.mark.timeout(120)
def test_a_wrong_password_in_the_environment_is_one_line_without_it(
    redis_server: RedisServer, namespace: str, worker_processes: list[WorkerProcess]
) -> None:
    url = redis_server.url.replace("redis://", "redis://app:s3cr3t-pw@")
    worker = WorkerProcess(url, namespace)
    worker_processes.append(worker)
    assert worker.process.wait(timeout=90) != 0
    err = worker.stderr()
    assert "Traceback" not in err
    assert "s3cr3t-pw" not in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.timeout(180)
async def test_a_second_sigterm_while_draining_stops_at_once_and_says_what_it_abandons(
    caller: MessageBus,
    redis_server: RedisServer,
    namespace: str,
    worker_processes: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    started = asyncio.Event()
    caller.register_event_handler(remote_app.SlowStartedEvent, lambda event: started.set())
    worker = WorkerProcess(redis_server.url, namespace)
    worker_processes.append(worker)
    await asyncio.to_thread(worker.wait_for, READY, stdout=True)
    command = remote_app.SlowCommand(seconds=600, runs_dir=str(tmp_path))
    pending = asyncio.create_task(caller.execute(command, timeout=120))
    try:
        await asyncio.wait_for(started.wait(), timeout=60)
        worker.process.send_signal(signal.SIGTERM)
        line = await asyncio.to_thread(worker.wait_for, "stopping")
        assert "send SIGINT or SIGTERM again" in line
        assert "1 running command(s)" in line
        assert worker.process.poll() is None  # draining: the command still runs
        worker.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.process.wait, 60)
    finally:
        pending.cancel()
    assert code == 128 + signal.SIGTERM  # not killed silently by the signal (-15)
    err = await asyncio.to_thread(worker.stderr)
    assert "Traceback" not in err
    assert "second SIGTERM, exiting now; abandoned 1 running command(s)" in err
    assert "another worker takes them over after 30 s" in err
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob(f"{command.id}.*")))
