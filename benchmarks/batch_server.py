"""A fast OpenAI-compatible server for benchmarks: every answer after a fixed latency.

    python benchmarks/batch_server.py [--latency 0.02]

One asyncio process (run it apart from the client, so the two share no GIL) speaking
HTTP/1.1 with keep-alive. ``POST .../chat/completions`` waits ``latency`` seconds, then
answers the Chat Completions JSON the ``openai`` SDK expects (with ``usage``, words
counted as tokens). It counts what it saw: ``GET /stats`` answers ``{"requests": ...,
"in_flight": ..., "peak_in_flight": ..., "connections": ..., "peak_connections": ...}``
and ``POST /reset`` zeroes the counts and peaks. It prints ``port N`` once it listens,
and stops when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

ANSWERS = ("positive", "negative", "neutral")


class Counts:
    """What the server saw since the last reset."""

    def __init__(self) -> None:
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.connections = 0
        self.peak_connections = 0

    def reset(self) -> None:
        self.requests = 0
        self.peak_in_flight = self.in_flight
        self.peak_connections = self.connections

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


def completion(body: dict[str, Any], number: int) -> dict[str, Any]:
    """The Chat Completions answer to ``body``: one of three labels, with usage."""
    messages = body.get("messages") or []
    prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
    content = ANSWERS[number % len(ANSWERS)]
    return {
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or "bench-gpt",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": 1,
            "total_tokens": prompt_tokens + 1,
        },
    }


async def serve(latency: float) -> None:
    counts = Counts()

    async def answer(method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path.rstrip("/").endswith("/stats"):
            return 200, counts.as_dict()
        if method == "POST" and path.rstrip("/").endswith("/reset"):
            counts.reset()
            return 200, counts.as_dict()
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return 404, {"error": {"message": f"No route {method} {path}"}}
        counts.requests += 1
        number = counts.requests
        counts.in_flight += 1
        counts.peak_in_flight = max(counts.peak_in_flight, counts.in_flight)
        try:
            await asyncio.sleep(latency)
        finally:
            counts.in_flight -= 1
        return 200, completion(json.loads(body or b"{}"), number)

    open_writers: set[asyncio.StreamWriter] = set()
    handlers: set[asyncio.Task[Any]] = set()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        open_writers.add(writer)
        counts.connections += 1
        counts.peak_connections = max(counts.peak_connections, counts.connections)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                status, payload = await answer(method, path, body)
                data = json.dumps(payload).encode()
                reason = "OK" if status == 200 else "Not Found"
                writer.write(
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed its connection
        finally:
            counts.connections -= 1
            open_writers.discard(writer)
            handlers.discard(task)
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"port {port}", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
    server.close()
    for writer in list(open_writers):  # idle keep-alive connections: their reads end
        writer.close()
    if handlers:
        await asyncio.wait(handlers, timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per answer")
    options = parser.parse_args()
    asyncio.run(serve(options.latency))


if __name__ == "__main__":
    main()
