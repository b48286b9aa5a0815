"""LLMEngine: prompts through the bus, events, spans with GenAI attributes, tools, limits."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmgine import CommandFailedError, ConfigurationError, MetricEvent, TraceEvent
from llmgine.bus import MessageBus
from llmgine.llm import (
    ClearConversationCommand,
    Conversation,
    LLMDeltaEvent,
    LLMEngine,
    LLMResponseEvent,
    PromptCommand,
    ScriptedProvider,
    SetSystemPromptCommand,
    ToolCallEvent,
    ToolResultEvent,
)
from llmgine.messages import Event

ReadLog = Callable[[Path | None], list[dict[str, Any]]]


def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


def explode(reason: str) -> None:
    """Always fails."""
    raise RuntimeError(reason)


def collect(bus: MessageBus, event_type: type[Event]) -> list[Any]:
    seen: list[Any] = []
    bus.register_event_handler(event_type, seen.append)
    return seen


async def test_prompt_command_result_is_the_final_text(bus: MessageBus) -> None:
    LLMEngine(bus, provider=ScriptedProvider(["Hello there!"]))
    result = await bus.execute(PromptCommand(prompt="hi"))
    assert result.success
    assert result.result == "Hello there!"
    assert result.metadata["rounds"] == 1
    assert result.metadata["provider"] == "scripted"


async def test_a_tool_round_publishes_call_and_result_events(bus: MessageBus) -> None:
    provider = ScriptedProvider([ScriptedProvider.call("add", a=2, b=3), "The sum is 5."])
    LLMEngine(bus, provider=provider, tools=[add])
    responses = collect(bus, LLMResponseEvent)
    calls = collect(bus, ToolCallEvent)
    results = collect(bus, ToolResultEvent)
    command = PromptCommand(prompt="add 2 and 3", conversation_id="math")
    result = await bus.execute(command)
    await bus.wait_for_events()
    assert result.result == "The sum is 5."
    assert [(c.tool_name, json.loads(c.arguments)) for c in calls] == [("add", {"a": 2, "b": 3})]
    assert [(r.tool_name, r.result, r.error) for r in results] == [("add", 5, None)]
    assert results[0].call_id == calls[0].call_id == "call_add"
    assert [r.tool_call_count for r in responses] == [1, 0]
    assert {r.prompt_id for r in responses} == {command.id}
    assert {r.conversation_id for r in responses} == {"math"}
    assert responses[1].finish_reason == "stop"
    # The second request carried the tool result back to the model.
    tool_message = provider.requests[1].messages[-1]
    assert (tool_message.role, tool_message.content, tool_message.tool_call_id) == (
        "tool",
        "5",
        "call_add",
    )


async def test_every_step_is_in_the_log_with_gen_ai_attributes(
    bus: MessageBus, read_log: ReadLog
) -> None:
    provider = ScriptedProvider([ScriptedProvider.call("add", a=1, b=1), "2"], model="m-1")
    LLMEngine(bus, provider=provider, tools=[add])
    await bus.execute(PromptCommand(prompt="add", temperature=0.2))
    await bus.wait_for_events()
    lines = read_log(bus.log_path)
    ends = [
        line["data"] for line in lines if line["type"] == "TraceEvent" and line["data"]["end_time"]
    ]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for span in ends:
        by_kind.setdefault(span["span_kind"], []).append(span)
    (command_span,) = by_kind["CHAIN"]
    llm_spans, (tool_span,) = by_kind["LLM"], by_kind["TOOL"]
    assert len(llm_spans) == 2
    root = command_span["span_context"]
    for span in [*llm_spans, tool_span]:
        assert span["span_context"]["trace_id"] == root["trace_id"]
        assert span["span_context"]["parent_span_id"] == root["span_id"]
    attrs = llm_spans[0]["attributes"]
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "scripted"
    assert attrs["gen_ai.request.model"] == "m-1"
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert attrs["gen_ai.usage.input_tokens"] == 1
    assert isinstance(attrs["gen_ai.usage.output_tokens"], int)
    assert tool_span["attributes"] == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "add",
        "gen_ai.tool.call.id": "call_add",
        "gen_ai.tool.type": "function",
    }
    metrics = [
        m for line in lines if line["type"] == "MetricEvent" for m in line["data"]["metrics"]
    ]
    names = [m["name"] for m in metrics]
    assert names.count("gen_ai.usage.input_tokens") == 2
    assert names.count("llm.latency_ms") == 2
    types = [line["type"] for line in lines]
    assert types.count("LLMResponseEvent") == 2
    assert types.count("ToolCallEvent") == types.count("ToolResultEvent") == 1


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (
            ScriptedProvider.call("add", a="x", b=1),
            "invalid arguments for add: a: Input should be a valid integer",
        ),
        (ScriptedProvider.call("nope"), "unknown tool 'nope'; available tools: add, explode"),
        (ScriptedProvider.call("explode", reason="kaboom"), "explode raised RuntimeError: kaboom"),
    ],
)
async def test_tool_failures_go_back_to_the_model_never_crash(
    bus: MessageBus, call: Any, error: str
) -> None:
    provider = ScriptedProvider([call, "Sorry, that failed."])
    LLMEngine(bus, provider=provider, tools=[add, explode])
    results = collect(bus, ToolResultEvent)
    result = await bus.execute(PromptCommand(prompt="go"))
    await bus.wait_for_events()
    assert result.success
    assert result.result == "Sorry, that failed."
    assert results[0].error is not None
    assert results[0].error.startswith(error)
    assert provider.requests[1].messages[-1].content == f"Error: {results[0].error}"


async def test_invalid_json_arguments_become_an_error_result(bus: MessageBus) -> None:
    from llmgine.llm import Completion, ToolCall

    bad = Completion(tool_calls=[ToolCall(id="c1", name="add", arguments='{"a": 1,')])
    provider = ScriptedProvider([bad, "ok"])
    LLMEngine(bus, provider=provider, tools=[add])
    await bus.execute(PromptCommand(prompt="go"))
    assert "not valid JSON" in (provider.requests[1].messages[-1].content or "")


async def test_parallel_tool_calls_run_concurrently(bus: MessageBus) -> None:
    arrived: dict[str, asyncio.Event] = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def meet(me: str, other: str) -> str:
        arrived[me].set()
        await asyncio.wait_for(arrived[other].wait(), timeout=5)  # only returns if both run at once
        return f"{me} met {other}"

    from llmgine.llm import Completion, ToolCall

    both = Completion(
        tool_calls=[
            ToolCall(id="1", name="meet", arguments='{"me": "a", "other": "b"}'),
            ToolCall(id="2", name="meet", arguments='{"me": "b", "other": "a"}'),
        ]
    )
    provider = ScriptedProvider([both, "done"])
    LLMEngine(bus, provider=provider, tools=[meet])
    result = await bus.execute(PromptCommand(prompt="go"))
    assert result.result == "done"
    assert [m.content for m in provider.requests[1].messages[-2:]] == ["a met b", "b met a"]


async def test_the_tool_round_bound_stops_gracefully(bus: MessageBus) -> None:
    provider = ScriptedProvider([ScriptedProvider.call("add", a=1, b=1)] * 3)
    engine = LLMEngine(bus, provider=provider, tools=[add], max_tool_rounds=2)
    results = collect(bus, ToolResultEvent)
    result = await bus.execute(PromptCommand(prompt="loop"))
    await bus.wait_for_events()
    assert result.success
    assert "Stopped after 2 rounds of tool calls" in result.result
    assert "max_tool_rounds" in result.result
    assert len(results) == 2
    assert len(provider.requests) == 3
    history = engine.conversations.get("default").messages
    assert [m.role for m in history[-3:]] == ["assistant", "tool", "assistant"]
    # The conversation stays valid: the next prompt works.
    provider.add("fine")
    assert await engine.chat("again") == "fine"


async def test_conversations_are_kept_per_id(bus: MessageBus) -> None:
    provider = ScriptedProvider(["one", "two", "three"])
    engine = LLMEngine(bus, provider=provider, system_prompt="Be brief.")
    await engine.chat("first", conversation_id="a")
    await engine.chat("second", conversation_id="a")
    await engine.chat("other", conversation_id="b")
    roles_a = [(m.role, m.content) for m in provider.requests[1].messages]
    assert roles_a == [
        ("system", "Be brief."),
        ("user", "first"),
        ("assistant", "one"),
        ("user", "second"),
    ]
    assert [m.content for m in provider.requests[2].messages] == ["Be brief.", "other"]


async def test_clear_and_system_prompt_commands(bus: MessageBus) -> None:
    provider = ScriptedProvider(["one", "two"])
    engine = LLMEngine(bus, provider=provider)
    await engine.chat("first")
    await bus.execute(SetSystemPromptCommand(system_prompt="You are a pirate."))
    cleared = await bus.execute(ClearConversationCommand())
    assert cleared.result is True
    await engine.chat("second")
    assert [(m.role, m.content) for m in provider.requests[1].messages] == [
        ("system", "You are a pirate."),
        ("user", "second"),
    ]
    assert (await bus.execute(ClearConversationCommand(conversation_id="never"))).result is False


async def test_history_is_bounded_whole_turns_at_a_time(bus: MessageBus) -> None:
    provider = ScriptedProvider([ScriptedProvider.call("add", a=1, b=2), "3", "x", "y"])
    engine = LLMEngine(bus, provider=provider, tools=[add], max_history=4)
    await engine.chat("add")  # user, assistant(call), tool, assistant
    await engine.chat("next")
    history = engine.conversations.get("default").messages
    assert [m.role for m in history] == ["user", "assistant"]
    await engine.chat("third")
    assert [m.content for m in engine.conversations.get("default").messages] == [
        "next",
        "x",
        "third",
        "y",
    ]


async def test_stream_yields_deltas_and_publishes_unlogged_delta_events(
    bus: MessageBus, read_log: ReadLog
) -> None:
    engine = LLMEngine(bus, provider=ScriptedProvider(["streamed words arrive one by one"]))
    deltas = collect(bus, LLMDeltaEvent)
    pieces = [piece async for piece in engine.stream("go")]
    await bus.wait_for_events()
    assert "".join(pieces) == "streamed words arrive one by one"
    assert len(pieces) == 6
    assert [d.delta for d in deltas] == pieces
    types = [line["type"] for line in read_log(bus.log_path)]
    assert "LLMDeltaEvent" not in types
    assert types.count("LLMResponseEvent") == 1


async def test_breaking_out_of_a_stream_cancels_the_prompt(bus: MessageBus) -> None:
    from llmgine.llm import Completion, Provider, StreamChunk

    class Endless(Provider):
        name = "endless"

        async def complete(self, request: Any) -> Completion:
            raise NotImplementedError

        async def stream(self, request: Any) -> Any:
            while True:
                yield StreamChunk(delta="more ")
                await asyncio.sleep(0)

    from llmgine import CommandErrorEvent

    engine = LLMEngine(bus, provider=Endless("endless"))
    failures: list[CommandErrorEvent] = []
    failed = asyncio.Event()
    bus.register_event_handler(CommandErrorEvent, lambda e: (failures.append(e), failed.set()))
    received = []
    stream = engine.stream("forever")
    async for piece in stream:
        received.append(piece)
        if len(received) == 3:
            break
    await stream.aclose()
    await asyncio.wait_for(failed.wait(), timeout=5)  # the cancelled prompt reports itself
    assert received == ["more "] * 3
    assert [f.command_result.error_type for f in failures] == ["CancelledError"]


async def test_chat_raises_with_the_failed_result(bus: MessageBus) -> None:
    from llmgine import ProviderRateLimitError

    engine = LLMEngine(bus, provider=ScriptedProvider([ProviderRateLimitError("slow down")]))
    with pytest.raises(CommandFailedError, match="slow down") as info:
        await engine.chat("hi")
    assert info.value.result.error_type == "ProviderRateLimitError"  # type: ignore[attr-defined]


async def test_a_prompt_may_name_another_model(bus: MessageBus) -> None:
    engine = LLMEngine(bus, provider=ScriptedProvider(["scripted"]))
    result = await bus.execute(PromptCommand(prompt="hi", model="offline"))
    assert "offline model" in result.result
    assert result.metadata["provider"] == "offline"
    assert engine.model == "scripted:scripted"


async def test_set_model_and_repr(bus: MessageBus) -> None:
    engine = LLMEngine(bus, model="offline", tools=[add])
    assert engine.model == "offline"
    assert repr(engine) == "<LLMEngine offline:offline (add)>"
    engine.set_model("scripted")
    assert engine.model == "scripted:scripted"


async def test_register_tool_and_decorator(bus: MessageBus) -> None:
    engine = LLMEngine(bus, model="offline")

    @engine.tool
    def shout(text: str) -> str:
        return text.upper()

    engine.register_tool(add)
    assert [t.name for t in engine.tools] == ["shout", "add"]
    reply = await engine.chat("please shout text=hello")
    assert "shout returned HELLO" in reply


async def test_metrics_and_spans_are_published_as_events(bus: MessageBus) -> None:
    LLMEngine(bus, model="offline")
    metrics = collect(bus, MetricEvent)
    spans = collect(bus, TraceEvent)
    await bus.execute(PromptCommand(prompt="hi"))
    await bus.wait_for_events()
    assert {m.name for e in metrics for m in e.metrics} == {
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "llm.latency_ms",
    }
    assert {s.span_kind for s in spans} == {"CHAIN", "LLM"}


async def test_the_scripted_model_says_how_to_give_it_replies(bus: MessageBus) -> None:
    engine = LLMEngine(bus, model="scripted")
    result = await bus.execute(PromptCommand(prompt="hi"))
    assert not result.success
    assert "answers only with the replies it is given, and it has none" in str(result.error)
    assert "engine.provider.add('a reply', ...)" in str(result.error)
    engine.provider.add("first")  # type: ignore[attr-defined]
    assert await engine.chat("hi") == "first"
    result = await bus.execute(PromptCommand(prompt="again"))
    assert "no replies left after 1 call:" in str(result.error)


@pytest.mark.parametrize(
    "settings",
    [{"max_tool_rounds": -1}, {"max_output_retries": -1}, {"timeout": 0}],
)
def test_a_wrong_engine_setting_is_a_configuration_error(settings: dict[str, Any]) -> None:
    bus = MessageBus(log_dir=None)
    with pytest.raises(ConfigurationError):
        LLMEngine(bus, provider=ScriptedProvider([]), **settings)
    with pytest.raises(ConfigurationError, match="max_messages"):
        Conversation("c", max_messages=0)


@pytest.mark.parametrize("name", ["max_context_tokens", "max_tool_rounds", "max_output_retries"])
@pytest.mark.parametrize("value", [math.nan, math.inf, True, 2.5, "4000", -1])
def test_an_engine_count_that_is_not_a_whole_number_is_a_configuration_error_naming_it(
    name: str, value: object
) -> None:
    bus = MessageBus(log_dir=None)
    with pytest.raises(ConfigurationError, match=f"{name} must be a whole number of"):
        LLMEngine(bus, provider=ScriptedProvider([]), **{name: value})


@pytest.mark.parametrize("value", [0, 2.5, True, "100"])
def test_max_history_must_be_a_whole_number_of_at_least_one(value: object) -> None:
    with pytest.raises(ConfigurationError, match="max_history must be a whole number of 1"):
        LLMEngine(MessageBus(log_dir=None), provider=ScriptedProvider([]), max_history=value)  # type: ignore[arg-type]


def test_a_model_string_with_the_providers_own_prefix_names_the_model_alone(
    bus: MessageBus,
) -> None:
    from llmgine.llm import OpenAIProvider

    def server() -> OpenAIProvider:
        return OpenAIProvider(api_key="sk-test", base_url="http://127.0.0.1:9/v1")

    prefixed = LLMEngine(bus, model="openai:gpt-4o-mini", provider=server())
    assert prefixed.provider.model == "gpt-4o-mini"  # what the server receives
    assert "openai:openai:" not in repr(prefixed)
    tagged = LLMEngine(bus, model="llama3:8b", provider=server())  # an Ollama name keeps its colon
    assert tagged.provider.model == "llama3:8b"


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, True, "30"])
def test_an_engine_timeout_that_is_not_a_finite_positive_number_is_refused(
    bus: MessageBus, bad: Any
) -> None:
    with pytest.raises(ConfigurationError, match="timeout must be a finite number of seconds"):
        LLMEngine(bus, model="offline", timeout=bad)


def test_a_model_or_provider_of_the_wrong_kind_is_a_configuration_error(bus: MessageBus) -> None:
    from llmgine import ScriptedProvider
    from llmgine.llm import OpenAIProvider

    with pytest.raises(ConfigurationError, match="a provider goes in provider="):
        LLMEngine(bus, model=ScriptedProvider(["hi"]))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="model= takes a model string"):
        LLMEngine(bus, model=123)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="write model='offline'"):
        LLMEngine(bus, provider="offline")  # type: ignore[arg-type]
    server = OpenAIProvider(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    for empty in ("", "openai:", "  "):
        with pytest.raises(ConfigurationError, match="names no model"):
            LLMEngine(bus, model=empty, provider=server)
