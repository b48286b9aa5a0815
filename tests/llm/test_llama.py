"""The openai path on a real OpenAI-compatible server: llama.cpp serving SmolLM2-135M-Instruct.

One server for the whole session (the ``llama_server`` fixture). Each test here
is a failure seen on this server before the fix: streamed tool names repeated in
every chunk, ``content: null`` answered with a 500, no way to force a tool, no
usage when streaming, a polluted history after an error, and more.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from llmgine.bus import MessageBus
from llmgine.llm import (
    ChatMessage,
    LLMEngine,
    LLMRequest,
    LLMResponseEvent,
    OpenAIProvider,
    PromptCommand,
    ToolResultEvent,
)
from llmgine.local_server import LlamaServer

pytestmark = pytest.mark.timeout(120)

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


def get_weather(city: str) -> str:
    """Get the weather in a city.

    Args:
        city: The city.
    """
    return f"Sunny and 21 C in {city}"


class City(BaseModel):
    name: str
    country: str


Make = Callable[..., OpenAIProvider]


@pytest.fixture
async def provider(llama_server: LlamaServer) -> AsyncIterator[Make]:
    """Providers on the real server; their kept-alive connections are closed after the test."""
    made: list[OpenAIProvider] = []

    def make(**options: Any) -> OpenAIProvider:
        made.append(
            OpenAIProvider(
                llama_server.model, base_url=llama_server.base_url, max_retries=0, **options
            )
        )
        return made[-1]

    yield make
    for p in made:
        await p.aclose()


async def test_streamed_tool_calls_keep_their_name(
    llama_server: LlamaServer, provider: Make
) -> None:
    # Failure 1: the server repeats the name in every chunk; it arrived as get_weatherget_weather...
    request = LLMRequest(
        model=llama_server.model,
        messages=[ChatMessage(role="user", content="What is the weather in Paris?")],
        tools=[WEATHER_TOOL],
        tool_choice="get_weather",
        max_tokens=32,
    )
    chunks = [chunk async for chunk in provider().stream(request)]
    completion = chunks[-1].completion
    assert completion is not None
    (call,) = completion.tool_calls
    assert call.name == "get_weather"
    assert set(json.loads(call.arguments)) == {"city"}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_forced_tool_runs_and_the_turn_finishes(
    bus: MessageBus, provider: Make, stream: bool
) -> None:
    # Failures 1-3: a tool named in tool_choice is called (streamed or not), the assistant
    # message with its tool call goes back with content "" (null was a 500), and the
    # model then answers in text.
    engine = LLMEngine(bus, provider=provider(), tools=[get_weather])
    results: list[ToolResultEvent] = []
    bus.register_event_handler(ToolResultEvent, results.append)
    result = await bus.execute(
        PromptCommand(
            prompt="What is the weather in Paris?",
            tool_choice="get_weather",
            stream=stream,
            temperature=0.0,
            max_tokens=48,
            options={"seed": 1},
        )
    )
    await bus.wait_for_events()
    assert result.success, result.error
    assert [(r.tool_name, r.error) for r in results] == [("get_weather", None)]
    assert str(results[0].result).startswith("Sunny and 21 C in ")
    assert result.metadata["rounds"] == 2
    assert isinstance(result.result, str) and result.result.strip()
    roles = [m.role for m in engine.conversations.get("default").messages]
    assert roles == ["user", "assistant", "tool", "assistant"]


@pytest.mark.parametrize("stream", [False, True])
async def test_usage_is_measured_or_marked_estimated(
    bus: MessageBus, provider: Make, stream: bool
) -> None:
    # Failure 4: streamed answers carry no usage; they were recorded as 0 and 0 tokens.
    responses: list[LLMResponseEvent] = []
    bus.register_event_handler(LLMResponseEvent, responses.append)
    LLMEngine(bus, provider=provider())
    result = await bus.execute(PromptCommand(prompt="Say hello.", max_tokens=8, stream=stream))
    await bus.wait_for_events()
    assert result.success, result.error
    (response,) = responses
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0
    assert response.usage.estimated is stream  # the server counts only unstreamed answers
    assert result.metadata.get("usage_estimated", False) is stream


async def test_a_context_length_error_leaves_the_conversation_usable(
    bus: MessageBus, provider: Make
) -> None:
    # Failure 5: the failed prompt stayed in the history, so every later prompt failed too.
    engine = LLMEngine(bus, provider=provider())
    assert await engine.chat("Say hi.", max_tokens=8)
    too_long = await bus.execute(PromptCommand(prompt="word " * 3000, max_tokens=8))
    assert too_long.error_type == "ProviderError"
    assert "maximum context length" in (too_long.error or "")
    assert await engine.chat("Say bye.", max_tokens=8)
    roles = [m.role for m in engine.conversations.get("default").messages]
    assert roles == ["user", "assistant", "user", "assistant"]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A socket that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        listener.close()


@pytest.mark.timeout(30)
async def test_a_server_that_never_answers_times_out(bus: MessageBus, silent_server: str) -> None:
    # Failure 6: no timeout anywhere; the SDK waited 600 s, three times.
    engine = LLMEngine(bus, provider=OpenAIProvider("m", base_url=silent_server), timeout=1)
    result = await bus.execute(PromptCommand(prompt="hi", stream=True))
    assert result.error_type == "ProviderTimeoutError"
    assert result.duration_ms is not None and result.duration_ms < 10_000
    assert engine.conversations.get("default").messages == []


async def test_a_server_error_dump_becomes_one_short_line(bus: MessageBus, provider: Make) -> None:
    # Failure 7: the server's 500 body (a multi-line dump with its file paths) reached
    # result.error verbatim. Forcing OpenAI's json_schema mode makes this server answer so.
    LLMEngine(bus, provider=provider(structured_output="json_schema"))
    result = await bus.execute(PromptCommand(prompt="Capital of France?", output_type=City))
    assert result.error_type == "ProviderError"
    error = result.error or ""
    assert error.startswith("openai answered 500")
    assert "\n" not in error
    assert "site-packages" not in error
    assert len(error) < 450


async def test_structured_output_on_the_real_model(bus: MessageBus, provider: Make) -> None:
    # OpenAI's json_schema form is rejected by this server: the provider finds the
    # json_object form, which llama.cpp turns into a grammar.
    p = provider()
    engine = LLMEngine(bus, provider=p)
    city = await engine.chat(
        "What is the capital of France? Give the city and its country.",
        output_type=City,
        temperature=0.0,
        max_tokens=48,
    )
    assert isinstance(city, City)
    assert city.name.strip() and city.country.strip()
    assert p.structured_output == "json_object"


async def test_record_on_the_real_server_then_replay(provider: Make, tmp_path: Path) -> None:
    # Failure 8: set_model(engine.model) read "replay:smollm2" as a file path.
    recording = MessageBus(log_dir=tmp_path, log_filename="real.jsonl", enable_console_traces=False)
    engine = LLMEngine(recording, provider=provider(), tools=[get_weather])
    async with recording:
        first = await engine.chat("Weather in Oslo?", tool_choice="get_weather", max_tokens=48)
        second = await engine.chat("Thanks!", max_tokens=16, stream=True)
    replaying = MessageBus(log_dir=None, enable_console_traces=False)
    replay = LLMEngine(replaying, model=f"replay:{tmp_path / 'real.jsonl'}", tools=[get_weather])
    replay.set_model(replay.model)
    async with replaying:
        again = [
            await replay.chat("Weather in Oslo?", tool_choice="get_weather"),
            await replay.chat("Thanks!", stream=True),
        ]
    assert again == [first, second]
    assert replay.model == f"replay:{tmp_path / 'real.jsonl'}"


async def test_an_mcp_tool_forced_on_the_real_server(bus: MessageBus, provider: Make) -> None:
    # The MCP issue's one call on a real model: mcp-server-time (stdio, from PyPI), forced.
    import sys

    engine = LLMEngine(bus, provider=provider())
    await engine.add_mcp_server(
        command=[sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"],
        name="clock",
    )
    results: list[ToolResultEvent] = []
    bus.register_event_handler(ToolResultEvent, results.append)
    try:
        result = await bus.execute(
            PromptCommand(
                prompt="What time is it in Europe/Paris?",
                tool_choice="get_current_time",
                temperature=0.0,
                max_tokens=48,
                options={"seed": 1},
            )
        )
        await bus.wait_for_events()
    finally:
        await engine.close()
    assert result.success, result.error
    (called,) = results
    assert called.tool_name == "get_current_time"
    # The MCP server ran the call the model made: a time came back, or the server's own
    # error about the small model's arguments (SmolLM2 invents odd time zones), which the
    # model then answered from.
    assert "datetime" in str(called.result) or "Error executing tool get_current_time" in str(
        called.error
    )


async def test_options_reach_the_server(bus: MessageBus, provider: Make) -> None:
    engine = LLMEngine(bus, provider=provider(), options={"seed": 5})
    free = await engine.chat("Describe the sea.", max_tokens=24, temperature=0, conversation_id="a")
    stopped = await engine.chat(
        "Describe the sea.",
        max_tokens=24,
        temperature=0,
        options={"stop": ["e"], "extra_body": {"top_k": 1}},
        conversation_id="b",
    )
    assert "e" in free
    assert "e" not in stopped
    assert free.startswith(stopped)


@pytest.mark.timeout(300)
async def test_a_failing_server_falls_back_to_the_real_llama_server(
    bus: MessageBus, provider: Make
) -> None:
    from llmgine.llm import Retries
    from llmgine.testing import FakeOpenAIServer

    with FakeOpenAIServer() as down:
        for _ in range(2):
            down.add_error(503, "overloaded")
        primary = OpenAIProvider("gpt-4o-mini", api_key="k", base_url=down.base_url)
        engine = LLMEngine(
            bus,
            provider=primary,
            retries=Retries(attempts=2, initial=0.01, jitter=False),
            fallback=[provider()],
        )
        result = await bus.execute(PromptCommand(prompt="Say hello.", max_tokens=8))
        assert engine.resilience.fallback  # the real server stood in
    assert result.success, result.error
    assert len(down.requests) == 2  # tried twice, then the fallback answered
    assert result.result  # the real model's words
