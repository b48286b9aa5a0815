"""The openai provider's unstreamed answers: sent by ``client.post``, read from their JSON.

``complete()`` skips ``chat.completions.create()``'s request transform and response
models (most of its CPU a row); these check that nothing else changed: the request
the server sees, the options, the errors, and the answer read back.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import BaseModel

from llmgine import ConfigurationError, ProviderError, ProviderTimeoutError
from llmgine.llm import ChatMessage, LLMRequest, OpenAIProvider
from llmgine.local_server import LlamaServer
from llmgine.testing import FakeOpenAIServer

KEY = "sk-SENTINEL-4f7c2a9e1b3d5f70"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class PathRecordingServer(FakeOpenAIServer):
    """The fake server, also keeping each request's path with its query string."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.paths: list[str] = []

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        base: Any = super()._handler_class()
        server = self

        class Handler(base):  # type: ignore[misc]
            def do_POST(self) -> None:
                server.paths.append(self.path)
                super().do_POST()  # the fake routes by the path, whatever the query string

        return Handler


@contextmanager
def answering(body: bytes, content_type: str = "application/json") -> Iterator[str]:
    """A server answering every POST with 200 and ``body``; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def ask(prompt: str = "What is the weather in Paris?", **fields: Any) -> LLMRequest:
    return LLMRequest(model="m", messages=[ChatMessage(role="user", content=prompt)], **fields)


async def send(p: OpenAIProvider, request: LLMRequest, *, stream: bool) -> None:
    """``request`` through ``stream()`` (by ``create()``) or ``complete()`` (by ``post``)."""
    if stream:
        [_ async for _ in p.stream(request)]
    else:
        await p.complete(request)


@pytest.fixture
def server() -> Iterator[PathRecordingServer]:
    with PathRecordingServer(api_key=KEY) as server:
        yield server


def provider(base_url: str, key: str = KEY, **options: Any) -> OpenAIProvider:
    return OpenAIProvider("m", api_key=key, base_url=base_url, max_retries=0, **options)


async def test_tool_calls_text_and_usage_are_read_from_the_answers_json(
    server: PathRecordingServer,
) -> None:
    server.add_tool_calls(("get_weather", {"city": "Paris"}), ("noop", {}), content="Checking.")
    completion = await provider(server.base_url).complete(ask(tools=[WEATHER_TOOL]))
    assert [(c.id, c.name, json.loads(c.arguments)) for c in completion.tool_calls] == [
        ("call_1_0", "get_weather", {"city": "Paris"}),
        ("call_1_1", "noop", {}),
    ]
    assert completion.content == "Checking."
    assert completion.finish_reason == "tool_calls"
    assert completion.model == "fake-gpt"
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (6, 11)
    assert completion.usage.estimated is False
    assert server.paths == ["/v1/chat/completions"]


async def test_cached_prompt_tokens_are_read() -> None:
    with FakeOpenAIServer(cached_tokens=4) as server:
        completion = await provider(server.base_url).complete(ask())
    assert completion.usage.input_tokens == 6
    assert completion.usage.cached_input_tokens == 4


async def test_calls_without_arguments_get_an_empty_object_and_other_calls_are_skipped() -> None:
    answer = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "type": "custom", "custom": {"name": "grep", "input": "x"}},
                        {
                            "id": "c2",
                            "type": "function",
                            "function": {"name": "f", "arguments": ""},
                        },
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }  # no content, model nor usage: read as absent, the usage estimated
    with answering(json.dumps(answer).encode()) as url:
        completion = await provider(url).complete(ask())
    assert [(c.id, c.name, c.arguments) for c in completion.tool_calls] == [("c2", "f", "{}")]
    assert completion.content is None
    assert completion.model is None
    assert completion.finish_reason == "tool_calls"
    assert completion.usage.estimated
    assert completion.usage.input_tokens > 0


async def test_extra_body_headers_and_query_reach_the_server(server: PathRecordingServer) -> None:
    options = {
        "extra_body": {"top_k": 1, "cache_prompt": True},
        "extra_headers": {"X-Trace": "row-7"},
        "extra_query": {"api-version": "2025-01"},
        "seed": 5,
    }
    await provider(server.base_url).complete(ask(options=options))
    (body,) = server.requests
    assert (body["top_k"], body["cache_prompt"], body["seed"]) == (1, True, 5)
    assert not {"extra_body", "extra_headers", "extra_query"} & body.keys()
    assert server.headers[0]["x-trace"] == "row-7"
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"
    assert server.paths == ["/v1/chat/completions?api-version=2025-01"]


async def test_the_request_is_the_one_create_sends(server: PathRecordingServer) -> None:
    # stream() still sends through chat.completions.create(): the same request, streamed.
    request = ask(
        tools=[WEATHER_TOOL],
        tool_choice="get_weather",
        temperature=0.2,
        max_tokens=30,
        options={"stop": ["\n"], "extra_body": {"top_k": 1}, "extra_headers": {"X-A": "b"}},
    )
    p = provider(server.base_url)
    await p.complete(request)
    [_ async for _ in p.stream(request)]
    posted, created = server.requests
    assert (created.pop("stream"), created.pop("stream_options")) == (True, {"include_usage": True})
    assert posted == created
    skip = {"content-length", "x-stainless-retry-count"}
    headers = [{k: v for k, v in h.items() if k not in skip} for h in server.headers]
    assert headers[0] == headers[1]
    assert server.paths[0] == server.paths[1]


async def test_omitted_options_are_not_sent_and_none_is_sent_as_null(
    server: PathRecordingServer,
) -> None:
    import openai

    options = {"seed": openai.omit, "user": openai.NOT_GIVEN, "top_p": None, "timeout": None}
    await provider(server.base_url).complete(ask(options=options))
    (body,) = server.requests
    assert "seed" not in body
    assert "user" not in body
    assert "timeout" not in body
    assert body["top_p"] is None


@pytest.mark.parametrize("stream", [False, True])
async def test_an_unknown_option_is_the_same_configuration_error_on_both_paths(
    server: PathRecordingServer, stream: bool
) -> None:
    request = ask(options={"temperature": 0, "frobnicate": 1, "wibble": 2})
    p = provider(server.base_url)
    with pytest.raises(ConfigurationError) as caught:
        await send(p, request, stream=stream)
    assert str(caught.value) == (
        "openai: got an unexpected keyword argument 'frobnicate': this option is not a "
        'Chat Completions parameter; put server-specific fields under options={"extra_body": '
        "{...}}."
    )
    assert server.requests == []


@pytest.mark.parametrize("stream", [False, True])
async def test_a_pydantic_class_as_response_format_is_refused_as_create_refuses_it(
    server: PathRecordingServer, stream: bool
) -> None:
    class City(BaseModel):
        name: str

    request = ask(options={"response_format": City})
    p = provider(server.base_url)
    with pytest.raises(TypeError, match=r"use `chat.completions.parse\(\)` instead"):
        await send(p, request, stream=stream)
    assert server.requests == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("where", ["options", "request", "provider"])
async def test_a_timeout_ends_a_request_the_server_does_not_answer(where: str) -> None:
    with FakeOpenAIServer(delay=60) as server:  # stop() ends the wait
        if where == "provider":
            p = provider(server.base_url, timeout=0.3)
            request = ask()
        else:
            p = provider(server.base_url)
            request = ask(options={"timeout": 0.3}) if where == "options" else ask(timeout=0.3)
        with pytest.raises(ProviderTimeoutError, match="did not answer in time"):
            await p.complete(request)
        await p.aclose()


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (b"<html><body>Welcome to nginx!</body></html>", "text/html", "not JSON"),
        (b'{"choices": [', "application/json", "not JSON"),
        (b"", "application/json", "an empty body"),
        (b'{"object": "list", "data": []}', "application/json", "had no choices"),
        (b'{"choices": []}', "application/json", "had no choices"),
        (b'{"choices": [{"index": 0}]}', "application/json", "not a Chat Completion"),
    ],
)
async def test_a_success_that_is_not_a_chat_completion_is_a_provider_error(
    body: bytes, content_type: str, says: str
) -> None:
    with answering(body, content_type) as url, pytest.raises(ProviderError, match=says) as caught:
        await provider(url).complete(ask())
    assert type(caught.value) is ProviderError


async def test_a_key_echoed_in_a_body_that_is_not_json_is_masked() -> None:
    echo = f"<html>Bad gateway for Bearer {KEY[3:]} and {KEY}</html>".encode()
    with answering(echo, "text/html") as url, pytest.raises(ProviderError) as caught:
        await provider(url).complete(ask())
    assert "SENTINEL" not in str(caught.value)
    assert "[redacted]" in str(caught.value)


@pytest.mark.timeout(120)
async def test_the_real_llama_server_answers_through_post(llama_server: LlamaServer) -> None:
    p = OpenAIProvider(llama_server.model, base_url=llama_server.base_url, max_retries=0)
    try:
        text = await p.complete(
            ask("Say hello.", max_tokens=8, options={"extra_body": {"top_k": 1}})
        )
        called = await p.complete(
            ask("Weather in Paris?", tools=[WEATHER_TOOL], tool_choice="get_weather")
        )
    finally:
        await p.aclose()
    assert text.content
    assert text.usage.input_tokens > 0
    assert text.usage.output_tokens > 0
    assert text.usage.estimated is False
    assert text.finish_reason in ("stop", "length")
    assert text.model
    (call,) = called.tool_calls
    assert call.name == "get_weather"
    assert isinstance(json.loads(call.arguments), dict)


async def test_omitted_values_at_any_depth_and_iterables_are_sent_as_create_sends_them(
    server: PathRecordingServer,
) -> None:
    import openai

    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    options = {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": schema, "strict": openai.omit},
        },
        "stop": (s for s in ["\n\n", "END"]),
        "stream_options": {"include_usage": openai.NOT_GIVEN},
    }
    await provider(server.base_url).complete(ask(options=options))
    (body,) = server.requests
    assert body["response_format"]["json_schema"] == {"name": "city", "schema": schema}
    assert body["stop"] == ["\n\n", "END"]
    assert body["stream_options"] == {}


async def test_a_wrapped_create_is_called_so_tracing_libraries_see_every_request(
    server: PathRecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools

    from openai.resources.chat.completions import AsyncCompletions

    seen: list[str] = []
    original = AsyncCompletions.create

    @functools.wraps(original)
    async def traced(self: Any, *args: Any, **kwargs: Any) -> Any:  # as an instrumentor wraps
        seen.append(kwargs["model"])
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(AsyncCompletions, "create", traced)
    completion = await provider(server.base_url).complete(ask(tools=[WEATHER_TOOL]))
    assert seen == ["m"]
    assert completion.content and completion.usage is not None
    assert server.requests[0]["tools"] == [WEATHER_TOOL]


@contextmanager
def json_object_only() -> Iterator[tuple[str, list[str]]]:
    """A server that rejects response_format json_schema (as llama-cpp-python's does)."""
    modes: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            mode = body["response_format"]["type"]
            modes.append(mode)
            if mode == "json_schema":
                status, answer = 400, {"error": {"message": "response_format: json_schema?"}}
            else:
                status, answer = (
                    200,
                    {
                        "model": "m",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": '{"name": "Oslo"}'},
                                "finish_reason": "stop",
                            }
                        ],
                    },
                )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", modes
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.timeout(60)
async def test_concurrent_first_requests_settle_on_one_structured_output_mode() -> None:
    import asyncio

    schema = {"title": "City", "type": "object", "properties": {"name": {"type": "string"}}}
    with json_object_only() as (base_url, modes):
        p = OpenAIProvider("m", base_url=base_url, max_retries=0)
        request = ask(output_schema=schema)
        answers = await asyncio.gather(*(p.complete(request) for _ in range(8)))
        assert [a.content for a in answers] == ['{"name": "Oslo"}'] * 8
        assert p.structured_output == "json_object"  # not moved past it by the later rejections
        await p.complete(request)
        await p.aclose()
    assert modes.count("json_object") == 9
    assert modes[-1] == "json_object" and modes.count("json_schema") <= 8


def test_credentials_in_base_url_never_reach_the_http_librarys_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    with FakeOpenAIServer() as fake:
        base_url = fake.base_url.replace("http://", "http://user:hunter2pass@")
        p = provider(base_url + "?api-key=tok3nvalue99")
        with caplog.at_level(logging.DEBUG):
            for name in ("httpx", "httpx2", "openai._base_client"):
                logging.getLogger(name).info("HTTP Request: POST %s/chat/completions", base_url)
        assert repr(p).count("hunter2pass") == 0
    assert caplog.records
    assert not [r for r in caplog.records if "hunter2pass" in r.getMessage()]
