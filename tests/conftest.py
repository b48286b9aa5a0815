"""Shared fixtures: a started bus writing its log to a temporary directory."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmgine.bus import MessageBus
from llmgine.local_server import LlamaServer


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
