"""The openai provider through the real SDK, against a fake server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmgine import (
    MissingAPIKeyError,
    ProviderAuthenticationError,
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimitError,
)
from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, OpenAIProvider, PromptCommand, ToolResultEvent, provider_for
from llmgine.llm.providers.openai import redact
from llmgine.testing import FakeOpenAIServer

KEY = "sk-SENTINEL-4f7c2a9e1b3d5f70"
ReadLog = Callable[[Path | None], list[dict[str, Any]]]


def get_weather(city: str) -> str:
    """Get the weather.

    Args:
        city: The city.
    """
    return f"Sunny in {city}"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=KEY) as server:
        yield server


def provider(server: FakeOpenAIServer, key: str = KEY) -> OpenAIProvider:
    return OpenAIProvider("gpt-4o-mini", api_key=key, base_url=server.base_url, max_retries=0)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_chat_with_a_tool_round_trip(
    bus: MessageBus, server: FakeOpenAIServer, stream: bool
) -> None:
    server.add_tool_calls(("get_weather", {"city": "Paris"}))
    server.add_text("It is sunny in Paris.")
    LLMEngine(bus, provider=provider(server), tools=[get_weather])
    results: list[ToolResultEvent] = []
    bus.register_event_handler(ToolResultEvent, results.append)
    result = await bus.execute(PromptCommand(prompt="Weather in Paris?", stream=stream))
    await bus.wait_for_events()
    assert result.success, result.error
    assert result.result == "It is sunny in Paris."
    assert [(r.tool_name, r.result) for r in results] == [("get_weather", "Sunny in Paris")]
    first, second = server.requests
    assert first["model"] == "gpt-4o-mini"
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert first["messages"] == [{"role": "user", "content": "Weather in Paris?"}]
    assert second["messages"][-1] == {
        "role": "tool",
        "content": "Sunny in Paris",
        "tool_call_id": "call_1_0",
    }
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_weather"
    if stream:
        assert first["stream_options"] == {"include_usage": True}
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"


async def test_streaming_assembles_split_tool_calls_and_usage(server: FakeOpenAIServer) -> None:
    from llmgine.llm import ChatMessage, LLMRequest

    server.add_tool_calls(("a", {"x": "one two three"}), ("b", {"y": 42}))
    request = LLMRequest(model="m", messages=[ChatMessage(role="user", content="go now")])
    chunks = [c async for c in provider(server).stream(request)]
    completion = chunks[-1].completion
    assert completion is not None
    assert [(c.name, json.loads(c.arguments)) for c in completion.tool_calls] == [
        ("a", {"x": "one two three"}),
        ("b", {"y": 42}),
    ]
    assert completion.finish_reason == "tool_calls"
    assert completion.usage.input_tokens == 2
    assert completion.usage.output_tokens == 10
    assert completion.model == "fake-gpt"


async def test_streaming_text_arrives_in_pieces(server: FakeOpenAIServer) -> None:
    from llmgine.llm import ChatMessage, LLMRequest

    server.add_text("one two three four")
    request = LLMRequest(model="m", messages=[ChatMessage(role="user", content="go")])
    chunks = [c async for c in provider(server).stream(request)]
    assert [c.delta for c in chunks[:-1]] == ["one", " two", " three", " four"]
    assert chunks[-1].completion is not None
    assert chunks[-1].completion.content == "one two three four"


@pytest.mark.parametrize("stream", [False, True])
async def test_servers_that_send_no_usage_are_tolerated(stream: bool) -> None:
    from llmgine.llm import ChatMessage, LLMRequest

    with FakeOpenAIServer(send_usage=False) as server:
        server.add_text("fine")
        p = OpenAIProvider("m", base_url=server.base_url, max_retries=0)  # no key needed here
        request = LLMRequest(model="m", messages=[ChatMessage(role="user", content="hi")])
        if stream:
            completion = [c async for c in p.stream(request)][-1].completion
        else:
            completion = await p.complete(request)
    assert completion is not None
    assert completion.content == "fine"
    # No counts from the server: estimated, and marked so (a recorded 0 would mean 0).
    assert completion.usage.estimated
    assert completion.usage.input_tokens > 0
    assert completion.usage.output_tokens == 1


@pytest.mark.parametrize(
    ("status", "message", "error_type", "readable"),
    [
        (429, "Rate limit reached for gpt-4o-mini", ProviderRateLimitError, "rate limiting"),
        (500, "The server had an error", ProviderError, "openai answered 500"),
        (401, "Invalid authentication", ProviderAuthenticationError, "Check OPENAI_API_KEY"),
    ],
)
async def test_api_errors_become_failed_results_with_readable_messages(
    bus: MessageBus,
    server: FakeOpenAIServer,
    status: int,
    message: str,
    error_type: type[Exception],
    readable: str,
) -> None:
    server.add_error(status, message)
    LLMEngine(bus, provider=provider(server), retries=None)  # the error itself, not a retry
    result = await bus.execute(PromptCommand(prompt="hi"))
    assert result.success is False
    assert result.error_type == error_type.__name__
    assert readable in (result.error or "")
    assert message in (result.error or "")


async def test_a_wrong_key_fails_and_no_key_reaches_the_log(
    bus: MessageBus, server: FakeOpenAIServer, read_log: ReadLog, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "sk-WRONGKEY-0123456789abcdef"
    LLMEngine(bus, provider=provider(server, key=wrong))
    result = await bus.execute(PromptCommand(prompt="hi"))
    await bus.wait_for_events()
    assert result.error_type == "ProviderAuthenticationError"
    assert "Incorrect API key provided: [redacted]" in (result.error or "")
    assert server.headers[0]["authorization"] == f"Bearer {wrong}"  # it was really sent
    assert bus.log_path is not None
    text = bus.log_path.read_text()
    assert "WRONGKEY" not in text
    assert "sk-WRONG" not in text
    assert "WRONGKEY" not in capsys.readouterr().out


async def test_the_key_never_reaches_the_log_or_a_repr(
    bus: MessageBus, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add_text("hello")
    p = provider(server)
    engine = LLMEngine(bus, provider=p)
    await engine.chat("hi")
    await bus.wait_for_events()
    assert bus.log_path is not None
    assert KEY not in bus.log_path.read_text()
    assert KEY not in repr(p) + repr(engine)
    assert KEY not in capsys.readouterr().out


async def test_an_unreachable_server_is_a_connection_error(bus: MessageBus) -> None:
    with FakeOpenAIServer() as server:
        url = server.base_url
    p = OpenAIProvider("m", api_key=KEY, base_url=url, max_retries=0, timeout=5)
    LLMEngine(bus, provider=p)
    result = await bus.execute(PromptCommand(prompt="hi"))
    assert result.error_type == ProviderConnectionError.__name__
    assert url in (result.error or "")


def test_a_missing_key_names_the_variable_and_the_offline_model() -> None:
    with pytest.raises(MissingAPIKeyError, match=r"OPENAI_API_KEY.*model=\"offline\""):
        OpenAIProvider("gpt-4o-mini")
    with pytest.raises(MissingAPIKeyError):
        provider_for("openai:gpt-4o-mini")


async def test_base_url_and_key_from_the_environment(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmgine.llm import ChatMessage, LLMRequest

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    p = provider_for()  # the default with a key set: openai:gpt-4o-mini
    assert isinstance(p, OpenAIProvider)
    assert p.model == "gpt-4o-mini"
    server.add_text("from env")
    request = LLMRequest(
        model=p.model, messages=[ChatMessage(role="user", content="hi")], max_tokens=5
    )
    assert (await p.complete(request)).content == "from env"
    assert server.requests[0]["max_tokens"] == 5  # a compatible server: max_tokens


def test_redact_masks_keys() -> None:
    assert redact(f"bad key {KEY}!", (KEY,)) == "bad key [redacted]!"
    assert redact("Incorrect API key provided: sk-abc12*********wxyz.") == (
        "Incorrect API key provided: [redacted]."
    )
    assert redact("nothing secret here") == "nothing secret here"
