"""Test doubles shipped with the package: a fake OpenAI-compatible server on loopback.

``FakeOpenAIServer`` speaks enough of the Chat Completions API for the official
``openai`` SDK: JSON answers, SSE streams ending in ``data: [DONE]`` (tool-call
arguments split across chunks, a usage chunk), and OpenAI-shaped error bodies.
Use it to test code on the ``openai`` path with no key and no network::

    with FakeOpenAIServer() as server:
        server.add_text("Hello!")
        provider = OpenAIProvider("gpt-4o-mini", api_key="sk-test", base_url=server.base_url)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from llmgine.errors import ServerNotStartedError

__all__ = ["FakeOpenAIServer", "FakeReply", "RateLimitedServer"]


@dataclass
class FakeReply:
    """One scripted answer of the fake server: text, tool calls, or an HTTP error."""

    content: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 200
    error: str = ""
    finish_reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with an error: ``{"Retry-After": "2"}``, say."""


def _words(text: str) -> list[str]:
    pieces: list[str] = []
    for word in text.split(" "):
        pieces.append(word if not pieces else " " + word)
    return pieces


class FakeOpenAIServer:
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint on ``127.0.0.1``.

    Replies are served in order; with none left, it echoes the last user message.
    Every request body is kept in ``requests`` and its headers (lowercased names) in ``headers``.

    Args:
        api_key: If set, requests must carry ``Authorization: Bearer <api_key>``;
            others get the 401 OpenAI sends for a wrong key.
        send_usage: Send token usage (servers that do not are tolerated by clients).
        model: The model name the answers report.
        cached_tokens: Report this many of each prompt's tokens (at most all of them) as
            read from the server's prompt cache (``prompt_tokens_details.cached_tokens``),
            as OpenAI does for a repeated prompt prefix.
        delay: Seconds each answer waits before it is sent (a server with latency), or a
            function of the request body giving them (slow rows for some prompts).
            ``stop()`` ends the waits still running.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        send_usage: bool = True,
        model: str = "fake-gpt",
        cached_tokens: int = 0,
        delay: float | Callable[[dict[str, Any]], float] = 0.0,
    ) -> None:
        self.api_key = api_key
        self.send_usage = send_usage
        self.model = model
        self.cached_tokens = cached_tokens
        self.delay = delay
        self._stopping = threading.Event()
        self.replies: list[FakeReply] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._calls = 0

    # ------------------------------------------------------------- scripting

    def add_text(self, content: str) -> None:
        """Queue a text answer."""
        self.replies.append(FakeReply(content=content))

    def add_tool_calls(
        self, *calls: tuple[str, dict[str, Any]], content: str | None = None
    ) -> None:
        """Queue an answer calling tools: ``add_tool_calls(("get_weather", {"city": "Paris"}))``."""
        self.replies.append(FakeReply(content=content, tool_calls=list(calls)))

    def add_error(
        self, status: int, message: str, *, retry_after: float | str | None = None
    ) -> None:
        """Queue an HTTP error with an OpenAI-shaped body (and a ``Retry-After`` if given)."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.replies.append(FakeReply(status=status, error=message, headers=headers))

    def _admit(self, body: dict[str, Any]) -> FakeReply | None:
        """An error to answer ``body`` with instead of the next reply (limits), or ``None``."""
        return None

    # ------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        """The base URL to give a client, e.g. ``http://127.0.0.1:50123/v1``."""
        if self._server is None:
            raise ServerNotStartedError(
                "The fake server is not started: use `with FakeOpenAIServer():`."
            )
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAIServer:
        """Start serving on a free port in a background thread."""
        if self._server is None:
            self._stopping.clear()
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
            self._server.daemon_threads = True
            server = self._server
            self._thread = threading.Thread(
                target=lambda: server.serve_forever(poll_interval=0.02),
                name="fake-openai",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._stopping.set()  # answers still waiting out their delay go now
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join()
            self._server = None
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -------------------------------------------------------------- answers

    def _next_reply(self, body: dict[str, Any]) -> FakeReply:
        with self._lock:
            self._calls += 1
            if self.replies:
                return self.replies.pop(0)
        user = next(
            (
                m.get("content")
                for m in reversed(body.get("messages", []))
                if m.get("role") == "user"
            ),
            "",
        )
        return FakeReply(content=f"Echo: {user}")

    def _message_and_chunks(self, reply: FakeReply) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        calls: list[dict[str, Any]] = [
            {
                "id": f"call_{self._calls}_{i}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for i, (name, args) in enumerate(reply.tool_calls)
        ]
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if calls:
            message["tool_calls"] = calls
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": piece} for piece in _words(reply.content or "") if reply.content]
        for index, call in enumerate(calls):
            arguments = call["function"]["arguments"]
            third = max(1, len(arguments) // 3)
            head = {"index": index, "id": call["id"], "type": "function"}
            deltas.append(
                {
                    "tool_calls": [
                        {**head, "function": {"name": call["function"]["name"], "arguments": ""}}
                    ]
                }
            )
            for start in range(0, len(arguments), third):
                piece = arguments[start : start + third]
                deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        return message, deltas

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: tests read the recorded requests instead

            def handle(self) -> None:
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client left before its answer (timed out, killed)

            def _send_json(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                if not self.path.partition("?")[0].rstrip("/").endswith("/chat/completions"):
                    self._send_json(404, {"error": {"message": f"No route {self.path}"}})
                    return
                if server.api_key is not None:
                    sent = self.headers.get("Authorization", "")
                    if sent != f"Bearer {server.api_key}":
                        key = sent.removeprefix("Bearer ")
                        masked = f"{key[:5]}{'*' * max(0, len(key) - 9)}{key[-4:]}"
                        self._send_json(
                            401,
                            {
                                "error": {
                                    "message": f"Incorrect API key provided: {masked}.",
                                    "type": "invalid_request_error",
                                    "code": "invalid_api_key",
                                }
                            },
                        )
                        return
                delay = server.delay(body) if callable(server.delay) else server.delay
                if delay > 0:
                    server._stopping.wait(delay)
                reply = server._admit(body) or server._next_reply(body)
                if reply.status != 200:
                    kind = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(reply.status)
                    self._send_json(
                        reply.status,
                        {"error": {"message": reply.error, "type": "api_error", "code": kind}},
                        reply.headers,
                    )
                    return
                message, deltas = server._message_and_chunks(reply)
                finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
                prompt_tokens = sum(
                    len(str(m.get("content") or "").split()) for m in body.get("messages", [])
                )
                completion_tokens = len((reply.content or "").split()) + 5 * len(reply.tool_calls)
                usage: dict[str, Any] = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                }
                if server.cached_tokens:
                    cached = min(server.cached_tokens, prompt_tokens)
                    usage["prompt_tokens_details"] = {"cached_tokens": cached}
                base = {
                    "id": f"chatcmpl-{server._calls}",
                    "created": int(time.time()),
                    "model": server.model,
                }
                if not body.get("stream"):
                    payload = {
                        **base,
                        "object": "chat.completion",
                        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    }
                    if server.send_usage:
                        payload["usage"] = usage
                    self._send_json(200, payload)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                chunk = {**base, "object": "chat.completion.chunk"}
                events = [
                    {**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
                    for d in deltas
                ]
                events.append(
                    {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
                )
                wants_usage = (body.get("stream_options") or {}).get("include_usage")
                if server.send_usage and wants_usage:
                    events.append({**chunk, "choices": [], "usage": usage})
                for event in events:
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler


class RateLimitedServer(FakeOpenAIServer):
    """A :class:`FakeOpenAIServer` that allows ``requests_per_minute`` per ``window`` seconds.

    With ``tokens_per_minute``, also at most that many prompt tokens (words, as its usage
    counts them) per window.

    A request past the limit gets the 429 OpenAI sends, with ``Retry-After`` saying when
    the oldest request of the window leaves it. ``refused`` counts those 429s;
    ``early_retries`` counts requests sent again (the same body) before the time their
    429 asked to wait.
    ``accepted_at`` holds when each accepted request came (``time.monotonic()``).

    Args:
        requests_per_minute: Requests accepted per window.
        window: The window's length in seconds (60: per minute; less to test quicker).
        **options: As for :class:`FakeOpenAIServer`.
    """

    def __init__(
        self,
        *,
        requests_per_minute: int,
        tokens_per_minute: int | None = None,
        window: float = 60.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.window = window
        self.accepted_at: list[float] = []
        self.accepted_tokens: list[int] = []
        self.refused = 0
        self.early_retries = 0
        self._retry_at: dict[str, float] = {}

    def _admit(self, body: dict[str, Any]) -> FakeReply | None:
        now = time.monotonic()
        same = json.dumps(body, sort_keys=True)
        with self._lock:
            if now < self._retry_at.pop(same, 0.0):
                self.early_retries += 1
            since = now - self.window
            recent = [t for t in self.accepted_at if t > since]
            tokens = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
            pairs = zip(self.accepted_at, self.accepted_tokens, strict=True)
            used = sum(n for t, n in pairs if t > since)
            fits = self.tokens_per_minute is None or used + tokens <= self.tokens_per_minute
            if len(recent) < self.requests_per_minute and fits:
                self.accepted_at.append(now)
                self.accepted_tokens.append(tokens)
                return None
            frees = now  # when the oldest request (and enough tokens) leave the window
            if len(recent) >= self.requests_per_minute:
                frees = recent[len(recent) - self.requests_per_minute] + self.window
            if not fits and self.tokens_per_minute is not None:
                over = used + tokens - self.tokens_per_minute
                for t, n in zip(self.accepted_at, self.accepted_tokens, strict=True):
                    if t > since:
                        over -= n
                        if over <= 0:
                            frees = max(frees, t + self.window)
                            break
            wait = max(frees - now, 0.001)
            self._retry_at[same] = now + wait
            self.refused += 1
        return FakeReply(
            status=429,
            error=f"Rate limit reached: {self.requests_per_minute} requests"
            + (f" or {self.tokens_per_minute} tokens" if self.tokens_per_minute else "")
            + f" per {self.window:g} s. Please try again in {wait:.3f}s.",
            headers={"Retry-After": f"{wait:.3f}"},
        )
