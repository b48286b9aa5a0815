"""The openai provider's streams: a whole answer ends with a finish_reason; anything else fails.

A server that cuts the stream, or answers a streamed request with a page that is no
event stream, must fail the prompt and leave its conversation as it was, as the
unstreamed request to the same server does.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from llmgine import CommandFailedError, ProviderConnectionError, ProviderError
from llmgine.bus import MessageBus
from llmgine.llm import (
    ChatMessage,
    LLMEngine,
    LLMRequest,
    OfflineProvider,
    OpenAIProvider,
    ScriptedProvider,
)
from llmgine.llm.events import LLMResponseEvent, LLMRetryEvent, ToolResultEvent
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.replay import ReplayProvider
from llmgine.llm.retries import Retries
from llmgine.llm.types import Completion, ToolCall

KEY = "sk-SENTINEL-4f7c2a9e1b3d5f70"
CALL = ToolCall(id="c", name="f")
FAST = Retries(attempts=3, initial=0.001, maximum=0.01, jitter=False)


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> bytes:
    """One SSE event of a Chat Completions stream."""
    if content:
        delta["content"] = content
    data = {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


WHOLE = chunk("hello") + chunk(" there") + chunk(finish="stop") + b"data: [DONE]\n\n"
CUT = chunk("hel") + chunk("lo ")  # then the connection closes: no finish_reason, no [DONE]


@dataclass
class Answer:
    """What the server sends one request: a 200 with ``body``, then (``cut``) it hangs up."""

    body: bytes
    content_type: str | None = "text/event-stream"
    cut: bool = True
    """Send no Content-Length and close the connection after the body (a dropped server)."""
    length: int | None = None
    """The Content-Length said, if not the body's (more: the server dies before the end)."""
    hold: threading.Event | None = None
    """Once ``body`` is sent, wait for this before sending ``then``."""
    then: bytes = b""
    held: list[bool] = field(default_factory=list)
    """Whether ``hold`` was set before the server gave up waiting, each time it waited."""


@contextmanager
def serving(*answers: Answer) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A server on 127.0.0.1 giving ``answers`` in turn (the last one again and again).

    Yields its base URL and the JSON bodies of the requests it got.
    """
    requests: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            answer = answers[min(len(requests), len(answers)) - 1]
            self.send_response(200)
            if answer.content_type is not None:
                self.send_header("Content-Type", answer.content_type)
            if answer.cut and answer.length is None:
                self.send_header("Connection", "close")
            else:
                self.send_header("Content-Length", str(answer.length or len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            self.wfile.flush()
            if answer.hold is not None:
                answer.held.append(answer.hold.wait(timeout=20))
                self.wfile.write(answer.then)
                self.wfile.flush()
            if answer.cut:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def ask(prompt: str = "Say hello.") -> LLMRequest:
    return LLMRequest(model="m", messages=[ChatMessage(role="user", content=prompt)])


def provider(base_url: str) -> OpenAIProvider:
    return OpenAIProvider("m", api_key=KEY, base_url=base_url, max_retries=0)


async def streamed(p: OpenAIProvider, request: LLMRequest) -> tuple[str, Any]:
    """The text deltas joined, and the completion of the last chunk."""
    deltas, completion = [], None
    async for piece in p.stream(request):
        deltas.append(piece.delta)
        completion = piece.completion or completion
    return "".join(deltas), completion


async def into(got: list[str], engine: LLMEngine) -> None:
    """Stream a prompt of the conversation "c", keeping each delta in ``got`` as it comes."""
    async for delta in engine.stream("Say hello.", conversation_id="c"):
        got.append(delta)


@pytest.mark.timeout(30)
async def test_a_whole_stream_gives_its_text_and_finish_reason() -> None:
    with serving(Answer(WHOLE)) as (url, _):
        p = provider(url)
        text, completion = await streamed(p, ask())
        await p.aclose()
    assert text == "hello there"
    assert (completion.content, completion.finish_reason) == ("hello there", "stop")


@pytest.mark.timeout(60)
async def test_a_stream_without_a_content_type_is_passed_on_as_it_comes() -> None:
    first = threading.Event()
    rest = chunk(" there") + chunk(finish="stop") + b"data: [DONE]\n\n"
    answer = Answer(chunk("hello"), content_type=None, hold=first, then=rest)
    with serving(answer) as (url, _):
        p = provider(url)
        deltas = []
        async for piece in p.stream(ask()):
            deltas.append(piece.delta)
            first.set()  # the rest is sent only now: a client reading to the end would wait
        await p.aclose()
    assert answer.held == [True]
    assert "".join(deltas) == "hello there"


@pytest.mark.timeout(30)
async def test_a_stream_cut_before_its_finish_reason_is_a_connection_error() -> None:
    with serving(Answer(CUT)) as (url, _):
        p = provider(url)
        with pytest.raises(ProviderConnectionError, match="before its finish_reason") as caught:
            await streamed(p, ask())
        await p.aclose()
    assert "6 character(s)" in str(caught.value)  # "hello " came, and was not taken as the answer


@pytest.mark.timeout(30)
async def test_an_empty_event_stream_is_a_connection_error() -> None:
    with serving(Answer(b"")) as (url, _):
        p = provider(url)
        with pytest.raises(ProviderConnectionError, match="before any chunk"):
            await streamed(p, ask())
        await p.aclose()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body>Please sign in to the corporate proxy</body></html>", "text/html"),
        (b'{"id": "x", "choices": [{"message": {"content": "hi"', "application/json"),
        (b"", "application/json"),
    ],
)
async def test_a_body_that_is_no_event_stream_is_a_provider_error_showing_it(
    body: bytes, content_type: str
) -> None:
    with serving(Answer(body, content_type, cut=False)) as (url, _):
        p = provider(url)
        with pytest.raises(ProviderError, match="not an event stream") as caught:
            await streamed(p, ask())
        await p.aclose()
    assert type(caught.value) is ProviderError  # not retried: the server is not an API
    shown = " ".join(body.decode().split())[:20] if body else "an empty body"
    assert shown in str(caught.value)


@pytest.mark.timeout(30)
async def test_a_body_that_is_no_event_stream_cut_mid_way_is_a_connection_error() -> None:
    half = b'{"id": "x", "choices": [{"message": {"content": "hi"'
    with serving(Answer(half, "application/json", length=len(half) * 2)) as (url, _):
        p = provider(url)
        with pytest.raises(ProviderConnectionError, match="connection broke"):
            await streamed(p, ask())
        await p.aclose()


@pytest.mark.timeout(30)
async def test_a_key_echoed_in_a_page_answering_a_stream_is_masked() -> None:
    page = f"<html>Bad gateway for Bearer {KEY[3:]} and {KEY}</html>".encode()
    with serving(Answer(page, "text/html", cut=False)) as (url, _):
        p = provider(url)
        with pytest.raises(ProviderError) as caught:
            await streamed(p, ask())
        await p.aclose()
    assert "SENTINEL" not in str(caught.value)
    assert "[redacted]" in str(caught.value)


@pytest.mark.timeout(30)
async def test_an_event_that_is_not_json_is_a_provider_error() -> None:
    with serving(Answer(chunk("hel") + b"data: {not json\n\n")) as (url, _):
        p = provider(url)
        with pytest.raises(ProviderError, match="not JSON"):
            await streamed(p, ask())
        await p.aclose()


@pytest.mark.timeout(30)
async def test_a_server_answering_a_stream_in_one_json_piece_is_read_as_that_answer() -> None:
    message = {"role": "assistant", "content": "hi there"}
    whole = {
        "id": "x",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    with serving(Answer(json.dumps(whole).encode(), "application/json", cut=False)) as (url, _):
        p = provider(url)
        text, completion = await streamed(p, ask())
        await p.aclose()
    assert text == "hi there"
    assert (completion.finish_reason, completion.usage.output_tokens) == ("stop", 2)


@pytest.mark.timeout(60)
async def test_a_cut_stream_fails_the_turn_and_leaves_the_conversation_unchanged(
    bus: MessageBus,
) -> None:
    responses: list[LLMResponseEvent] = []
    bus.register_event_handler(LLMResponseEvent, responses.append)
    with serving(Answer(CUT)) as (url, requests):
        engine = LLMEngine(bus, provider=provider(url), retries=FAST, timeout=20)
        got: list[str] = []
        with pytest.raises(CommandFailedError, match="before its finish_reason"):
            await into(got, engine)
        await bus.wait_for_events()
        conversation = await engine.conversations.aget("c")
        await engine.aclose()
    assert "".join(got) == "hello "  # shown as it came, then the error
    assert len(requests) == 1  # text was passed on: not sent again
    assert conversation.messages == []
    assert responses == []


@pytest.mark.timeout(60)
async def test_a_stream_cut_before_any_text_is_retried(bus: MessageBus) -> None:
    retried: list[LLMRetryEvent] = []
    bus.register_event_handler(LLMRetryEvent, retried.append)
    started = chunk(role="assistant")  # a first chunk with no text, then the server is gone
    with serving(Answer(started), Answer(b""), Answer(WHOLE)) as (url, requests):
        engine = LLMEngine(bus, provider=provider(url), retries=FAST, timeout=20)
        text = "".join([d async for d in engine.stream("Say hello.", conversation_id="c")])
        await bus.wait_for_events()
        conversation = await engine.conversations.aget("c")
        await engine.aclose()
    assert text == "hello there"
    assert len(requests) == 3
    assert [e.attempt for e in retried] == [1, 2]
    assert [(m.role, m.content) for m in conversation.messages] == [
        ("user", "Say hello."),
        ("assistant", "hello there"),
    ]


def delete_rows(table: str, where: str = "") -> str:
    """Delete rows.

    Args:
        table: The table.
        where: The condition.
    """
    return f"deleted from {table} where {where!r}"


@pytest.mark.timeout(60)
async def test_a_tool_call_cut_mid_arguments_is_never_run_and_the_call_is_sent_again(
    bus: MessageBus,
) -> None:
    ran: list[ToolResultEvent] = []
    bus.register_event_handler(ToolResultEvent, ran.append)
    call = {"index": 0, "id": "call_a", "type": "function"}
    call["function"] = {"name": "delete_rows", "arguments": '{"table": "users", "where": "id = 1'}
    with serving(Answer(chunk(tool_calls=[call])), Answer(WHOLE)) as (url, requests):
        engine = LLMEngine(bus, provider=provider(url), retries=FAST, tools=[delete_rows])
        text = "".join([d async for d in engine.stream("Clean up.", conversation_id="c")])
        await bus.wait_for_events()
        await engine.aclose()
    assert text == "hello there"
    assert len(requests) == 2
    assert ran == []


@pytest.mark.timeout(60)
async def test_a_page_answering_a_stream_fails_the_turn_without_retrying(bus: MessageBus) -> None:
    page = Answer(b"<html>Please sign in</html>", "text/html", cut=False)
    with serving(page) as (url, requests):
        engine = LLMEngine(bus, provider=provider(url), retries=FAST, timeout=20)
        with pytest.raises(CommandFailedError, match="not an event stream"):
            [d async for d in engine.stream("Say hello.", conversation_id="c")]
        conversation = await engine.conversations.aget("c")
        await engine.aclose()
    assert len(requests) == 1
    assert conversation.messages == []


@pytest.mark.parametrize(
    ("make", "finish_reason"),
    [
        (OfflineProvider, "stop"),
        (lambda: ScriptedProvider(["hello there"]), "stop"),
        (lambda: ScriptedProvider([Completion(content="hello there")]), "stop"),
        (lambda: ScriptedProvider([Completion(tool_calls=[CALL])]), "tool_calls"),
    ],
    ids=["offline", "scripted-text", "scripted-completion", "scripted-tool-call"],
)
async def test_our_in_process_providers_end_each_stream_with_a_finish_reason(
    make: Callable[[], Provider], finish_reason: str
) -> None:
    *_, last = [c async for c in make().stream(ask())]
    assert last.completion is not None
    assert last.completion.finish_reason == finish_reason


async def test_a_replayed_stream_ends_with_the_recorded_finish_reason(bus: MessageBus) -> None:
    engine = LLMEngine(bus, model="offline")
    [_ async for _ in engine.stream("Say hello.")]
    await bus.wait_for_events()
    bus.flush()
    assert bus.log_path is not None
    replay = ReplayProvider(bus.log_path)
    *_, last = [c async for c in replay.stream(ask())]
    assert last.completion is not None
    assert last.completion.finish_reason == "stop"
