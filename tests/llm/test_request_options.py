"""Request options, timeouts, conversation integrity and estimated usage, on scripted providers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llmgine import ConfigurationError, ProviderError, TraceEvent
from llmgine.bus import MessageBus
from llmgine.llm import (
    ChatMessage,
    Completion,
    LLMEngine,
    LLMRequest,
    LLMResponseEvent,
    PromptCommand,
    Provider,
    ScriptedProvider,
    StreamChunk,
    ToolResultEvent,
)
from llmgine.llm.engine import DEFAULT_TIMEOUT
from llmgine.observability.codec import encode


def get_weather(city: str) -> str:
    """Get the weather.

    Args:
        city: The city.
    """
    return f"Sunny in {city}"


class Hanging(Provider):
    """A server that never answers."""

    name = "hanging"

    async def complete(self, request: LLMRequest) -> Completion:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        yield StreamChunk(delta="partial ")
        await asyncio.Event().wait()


async def test_options_merge_over_the_engine_defaults(bus: MessageBus) -> None:
    provider = ScriptedProvider(["a", "b"])
    engine = LLMEngine(bus, provider=provider, options={"seed": 1, "top_p": 0.5})
    await engine.chat("one")
    await engine.chat("two", options={"seed": 2, "stop": ["\n"]}, temperature=0.0, max_tokens=9)
    first, second = provider.requests
    assert first.options == {"seed": 1, "top_p": 0.5}
    assert second.options == {"seed": 2, "top_p": 0.5, "stop": ["\n"]}
    assert (second.temperature, second.max_tokens) == (0.0, 9)


async def test_a_forced_tool_runs_once_then_the_model_answers(bus: MessageBus) -> None:
    provider = ScriptedProvider([ScriptedProvider.call("get_weather", city="Oslo"), "Sunny."])
    engine = LLMEngine(bus, provider=provider, tools=[get_weather])
    results: list[ToolResultEvent] = []
    bus.register_event_handler(ToolResultEvent, results.append)
    assert await engine.chat("Weather?", tool_choice="get_weather") == "Sunny."
    await bus.wait_for_events()
    assert [r.result for r in results] == ["Sunny in Oslo"]
    assert [r.tool_choice for r in provider.requests] == ["get_weather", None]


async def test_the_offline_model_obeys_a_forced_tool_choice(bus: MessageBus) -> None:
    engine = LLMEngine(bus, model="offline", tools=[get_weather])
    reply = await engine.chat("Tell me about Paris", tool_choice="required")
    assert "get_weather returned Sunny in Paris" in reply
    reply = await engine.chat("What is the weather in Paris?", tool_choice="none")
    assert "get_weather returned" not in reply


@pytest.mark.parametrize(
    ("choice", "tools", "message"),
    [
        ("get_wether", [get_weather], 'neither "auto", "none", "required" nor a tool'),
        ("required", [], "needs tools"),
    ],
)
async def test_a_wrong_tool_choice_is_a_clear_failure(
    bus: MessageBus, choice: str, tools: list[Any], message: str
) -> None:
    LLMEngine(bus, provider=ScriptedProvider(["never"]), tools=tools)
    result = await bus.execute(PromptCommand(prompt="hi", tool_choice=choice))
    assert result.error_type == ConfigurationError.__name__
    assert message in (result.error or "")


def test_the_default_timeout_is_finite(bus: MessageBus) -> None:
    engine = LLMEngine(bus, model="offline")
    assert engine.timeout == DEFAULT_TIMEOUT
    assert 0 < DEFAULT_TIMEOUT <= 300
    with pytest.raises(ValueError, match="timeout must be a finite number of seconds more than 0"):
        LLMEngine(MessageBus(log_dir=None), model="offline", timeout=0)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_prompt_that_takes_too_long_fails_and_leaves_the_conversation(
    bus: MessageBus, stream: bool
) -> None:
    engine = LLMEngine(bus, provider=ScriptedProvider(["First."]))
    await engine.chat("one")
    before = list(engine.conversations.get("default").messages)
    engine.provider = Hanging("h")
    result = await bus.execute(PromptCommand(prompt="two", timeout=0.2, stream=stream))
    assert result.error_type == "ProviderTimeoutError"
    assert "longer than its timeout of 0.2 s" in (result.error or "")
    assert engine.conversations.get("default").messages == before
    # The engine's own default applies when the prompt sets none.
    engine.timeout = 0.2
    result = await bus.execute(PromptCommand(prompt="three", stream=stream))
    assert result.error_type == "ProviderTimeoutError"


async def test_a_failed_prompt_leaves_no_user_message_behind(bus: MessageBus) -> None:
    provider = ScriptedProvider(
        [
            "First.",
            ProviderError("openai answered 400: this model's maximum context length is 2048"),
            "Fine again.",
        ]
    )
    engine = LLMEngine(bus, provider=provider)
    await engine.chat("one")
    failed = await bus.execute(PromptCommand(prompt="x " * 5000))
    assert not failed.success
    assert await engine.chat("three") == "Fine again."
    roles = [m.role for m in provider.requests[-1].messages]
    assert roles == ["user", "assistant", "user"]  # not two user messages in a row


async def test_a_tool_round_that_fails_later_leaves_no_unanswered_call(bus: MessageBus) -> None:
    provider = ScriptedProvider(
        [ScriptedProvider.call("get_weather", city="Oslo"), ProviderError("boom"), "ok"]
    )
    engine = LLMEngine(bus, provider=provider, tools=[get_weather])
    assert not (await bus.execute(PromptCommand(prompt="weather?"))).success
    assert engine.conversations.get("default").messages == []
    assert await engine.chat("again") == "ok"
    assert [m.role for m in provider.requests[-1].messages] == ["user"]


async def test_set_model_with_the_current_model_keeps_the_provider(tmp_path: Path) -> None:
    log = tmp_path / "recorded.jsonl"
    response = LLMResponseEvent(
        conversation_id="default",
        prompt_id="00000000-0000-0000-0000-000000000000",  # type: ignore[arg-type]
        content="recorded",
        model="smollm2",
        provider="openai",
        finish_reason="stop",
        latency_ms=1.0,
    )
    log.write_bytes(encode("event", response, None))
    bus = MessageBus(log_dir=None)
    engine = LLMEngine(bus, model=f"replay:{log}")
    assert engine.model == f"replay:{log}"
    provider = engine.provider
    engine.set_model(engine.model)  # was: "replay:smollm2" read as a file path
    assert engine.provider is provider
    for model in ("offline", "scripted:scripted"):
        engine.set_model(model)
        current = engine.provider
        engine.set_model(engine.model)
        assert engine.provider is current


def test_scripted_calls_may_pass_any_argument_name() -> None:
    completion = ScriptedProvider.call("rename", {"name": "a.txt", "call_id": 7}, call_id="c1")
    (call,) = completion.tool_calls
    assert (call.id, call.name) == ("c1", "rename")
    assert json.loads(call.arguments) == {"name": "a.txt", "call_id": 7}
    (call,) = ScriptedProvider.call("add", a=1, b=2).tool_calls
    assert (call.id, json.loads(call.arguments)) == ("call_add", {"a": 1, "b": 2})


class NoUsage(Provider):
    """A provider whose server reports no counts: it estimates, as the openai one does."""

    name = "nousage"

    async def complete(self, request: LLMRequest) -> Completion:
        from llmgine.llm.providers.base import estimate_usage

        completion = Completion(content="two words", finish_reason="stop")
        return completion.model_copy(update={"usage": estimate_usage(request, completion)})


async def test_estimated_usage_is_marked_in_events_spans_results_and_frames(
    bus: MessageBus,
) -> None:
    from llmgine.analysis import llm_calls_frame, load_events

    responses: list[LLMResponseEvent] = []
    spans: list[TraceEvent] = []
    bus.register_event_handler(LLMResponseEvent, responses.append)
    bus.register_event_handler(TraceEvent, spans.append)
    LLMEngine(bus, provider=NoUsage("n"))
    result = await bus.execute(PromptCommand(prompt="hello there"))
    LLMEngine(bus, provider=ScriptedProvider(["counted"]), model="s")  # replaces the engine
    await bus.execute(PromptCommand(prompt="hello"))
    await bus.wait_for_events()
    assert result.metadata["usage_estimated"] is True
    assert [r.usage.estimated for r in responses] == [True, False]
    assert responses[0].usage.output_tokens == 2
    llm_spans = [s for s in spans if s.span_kind == "LLM" and s.end_time is not None]
    assert [s.attributes["llmgine.usage.estimated"] for s in llm_spans] == [True, False]
    await bus.stop()
    assert bus.log_path is not None
    calls = llm_calls_frame(load_events(bus.log_path))
    assert list(calls["usage_estimated"]) == [True, False]
    assert list(calls["output_tokens"]) == [2, 1]


def test_request_messages_never_carry_null_content() -> None:
    from llmgine.llm.providers.openai import _message
    from llmgine.llm.types import ToolCall

    message = ChatMessage(role="assistant", tool_calls=[ToolCall(id="c", name="f")])
    assert _message(message)["content"] == ""
