"""Error texts of the openai path: short, true to what happened, and free of secrets.

These need a server that misbehaves on purpose (a dropped stream, a 500 with a
stack dump, a key echoed without its prefix), so they run on the fake server or
on a raw socket, not on the real llama.cpp server.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from llmgine import ProviderAuthenticationError, ProviderConnectionError, ProviderError
from llmgine._urls import redact_url
from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, OpenAIProvider, PromptCommand
from llmgine.llm.providers.openai import redact, safe_url
from llmgine.testing import FakeOpenAIServer

KEY = "sk-SENTINEL-4f7c2a9e1b3d5f70"


@pytest.fixture
def dropping_server() -> Iterator[str]:
    """A server that accepts, starts an SSE answer, then closes the connection mid-stream."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                chunk = (
                    '{"id":"x","object":"chat.completion.chunk","created":0,"model":"m",'
                    '"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}'
                )
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                body = f"data: {chunk}\n\n".encode()
                conn.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n")
                # ... and the connection drops: no last chunk, no [DONE].

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        done.set()
        thread.join()
        listener.close()


@pytest.mark.timeout(30)
async def test_a_dropped_stream_is_not_called_unreachable(
    bus: MessageBus, dropping_server: str
) -> None:
    provider = OpenAIProvider("m", base_url=dropping_server, max_retries=0)
    LLMEngine(bus, provider=provider)
    result = await bus.execute(PromptCommand(prompt="hi", stream=True))
    assert result.error_type == ProviderConnectionError.__name__
    error = result.error or ""
    assert "was reached but the connection broke" in error
    assert "could not be reached" not in error


async def test_an_unreachable_server_says_so(bus: MessageBus) -> None:
    with FakeOpenAIServer() as server:
        url = server.base_url
    LLMEngine(bus, provider=OpenAIProvider("m", base_url=url, max_retries=0))
    result = await bus.execute(PromptCommand(prompt="hi", stream=True))
    assert "could not be reached at" in (result.error or "")


async def test_a_server_dump_is_cut_to_its_first_line(bus: MessageBus) -> None:
    dump = (
        "Internal Server Error\n"
        'Traceback (most recent call last):\n  File "/srv/app/llama_cpp/server/app.py", line 3\n'
        "KeyError: 'content'"
    )
    with FakeOpenAIServer() as server:
        server.add_error(500, dump)
        provider = OpenAIProvider("m", base_url=server.base_url, max_retries=0)
        LLMEngine(bus, provider=provider, retries=None)
        result = await bus.execute(PromptCommand(prompt="hi"))
    assert result.error_type == ProviderError.__name__
    assert result.error is not None
    assert "\n" not in result.error
    assert "/srv/app" not in result.error
    assert result.error.startswith("openai answered 500")
    assert "Internal Server Error ..." in result.error


async def test_a_key_echoed_without_its_prefix_is_redacted(
    bus: MessageBus, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = KEY.removeprefix("sk-")
    with FakeOpenAIServer() as server:
        server.add_error(401, f"Invalid authentication: key {bare} is not known")
        provider = OpenAIProvider("m", api_key=KEY, base_url=server.base_url, max_retries=0)
        LLMEngine(bus, provider=provider)
        result = await bus.execute(PromptCommand(prompt="hi"))
    await bus.wait_for_events()
    assert result.error_type == ProviderAuthenticationError.__name__
    assert "key [redacted] is not known" in (result.error or "")
    assert bus.log_path is not None
    assert bare not in bus.log_path.read_text()
    assert bare not in capsys.readouterr().out


async def test_credentials_in_base_url_never_show(
    bus: MessageBus, console: object, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeOpenAIServer() as server:
        port = server.base_url.split(":")[2].split("/")[0]
    url = f"http://alice:pw-Secret123@127.0.0.1:{port}/v1?api-key=qs-Secret456&region=eu"
    provider = OpenAIProvider("m", base_url=url, max_retries=0)
    engine = LLMEngine(bus, provider=provider)
    result = await bus.execute(PromptCommand(prompt="hi"))
    await bus.wait_for_events()
    assert result.error_type == ProviderConnectionError.__name__
    assert bus.log_path is not None
    shown = [
        result.error or "",
        repr(provider),
        repr(engine),
        bus.log_path.read_text(),
        capsys.readouterr().out,
        str(console.getvalue()),  # type: ignore[attr-defined]
    ]
    for text in shown:
        assert "pw-Secret123" not in text
        assert "qs-Secret456" not in text
        assert "alice:pw" not in text  # the user name alone is shown, as everywhere in llmgine
    assert "127.0.0.1" in (result.error or "")


def test_safe_url_is_the_projects_one_url_redactor() -> None:
    assert safe_url is redact_url
    assert (
        safe_url("http://u:p@host:1/v1?api-key=abc&x=") == "http://u:***@host:1/v1?api-key=***&x="
    )
    assert safe_url("https://api.example.com/v1") == "https://api.example.com/v1"


def test_a_refused_connection_is_told_apart_in_the_sdks_own_http_library() -> None:
    """Whatever HTTP library the installed openai uses (httpx2, not httpx), no import fails."""
    import importlib

    import openai

    # The HTTP library is the one the SDK's own client class comes from.
    modules = [c.__module__ for c in openai.DefaultAsyncHttpxClient.__mro__]
    transport = importlib.import_module(next(m for m in modules if m != "openai").split(".")[0])
    request = transport.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    provider = OpenAIProvider("m", base_url="http://127.0.0.1:9/v1", max_retries=0)
    for failure in (transport.ConnectError("no route to host"), transport.ReadError("reset")):
        error = openai.APIConnectionError(request=request)
        error.__cause__ = failure
        shown = str(provider._error(error))
        if isinstance(failure, transport.ConnectError):
            assert "could not be reached at" in shown, shown
        else:
            assert "was reached but the connection broke" in shown, shown


@pytest.mark.parametrize("key", ["x", "EMPTY"])
async def test_a_short_placeholder_key_does_not_mangle_the_servers_words(
    bus: MessageBus, key: str
) -> None:
    with FakeOpenAIServer() as server:
        server.add_error(400, "max context exceeded: reduce the tokens of EMPTYISH messages")
        provider = OpenAIProvider("m", api_key=key, base_url=server.base_url, max_retries=0)
        LLMEngine(bus, provider=provider)
        result = await bus.execute(PromptCommand(prompt="hi"))
    assert "max context exceeded: reduce the tokens of EMPTYISH messages" in (result.error or "")


def test_a_short_key_is_still_masked_where_it_stands_alone() -> None:
    assert redact("bad key x, try again", ("x",)) == "bad key [redacted], try again"
    assert redact("key=EMPTY;", ("EMPTY",)) == "key=[redacted];"
    assert redact("maximum context", ("x",)) == "maximum context"
