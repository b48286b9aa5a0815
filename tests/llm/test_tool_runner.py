"""ToolRunner runs tool calls; PromptRun has two loops: tool rounds, then output retries."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from pydantic import BaseModel

from llmgine.bus import MessageBus
from llmgine.errors import ConfigurationError, StructuredOutputError
from llmgine.llm import (
    ApproveToolCallCommand,
    PromptCommand,
    ScriptedProvider,
    ToolApprovalRequestedEvent,
    ToolCallEvent,
    ToolResultEvent,
)
from llmgine.llm.context import Conversation
from llmgine.llm.run import PromptRun
from llmgine.llm.tool_runner import ToolRunner
from llmgine.llm.types import ToolCall


def add(a: int, b: int) -> int:
    """Add.

    Args:
        a: First.
        b: Second.
    """
    return a + b


def explode() -> None:
    """Fails."""
    raise RuntimeError("boom")


class Answer(BaseModel):
    value: int


def call(name: str, arguments: str = "{}", call_id: str | None = None) -> ToolCall:
    return ToolCall(id=call_id or f"id-{name}", name=name, arguments=arguments)


async def test_the_runner_answers_every_call_in_order_and_failures_become_text(
    bus: MessageBus,
) -> None:
    events: list[Any] = []
    bus.register_event_handler(ToolCallEvent, events.append)
    bus.register_event_handler(ToolResultEvent, events.append)
    runner = ToolRunner(bus, [add, explode])
    calls = [call("add", '{"a": 2, "b": 3}'), call("explode"), call("nope")]
    messages = await runner.run_all(calls, "c1", uuid.uuid4())
    await bus.wait_for_events()
    assert [(m.role, m.tool_call_id) for m in messages] == [
        ("tool", "id-add"),
        ("tool", "id-explode"),
        ("tool", "id-nope"),
    ]
    assert messages[0].content == "5"
    assert messages[1].content == "Error: explode raised RuntimeError: boom"
    assert messages[2].content == "Error: unknown tool 'nope'; available tools: add, explode"
    results = {e.tool_name: e for e in events if isinstance(e, ToolResultEvent)}
    assert (results["add"].result, results["explode"].error is not None) == (5, True)
    assert len([e for e in events if isinstance(e, ToolCallEvent)]) == 3


async def test_the_runner_checks_the_tool_choice_against_what_it_offers(bus: MessageBus) -> None:
    runner = ToolRunner(bus, [add])
    assert runner.offer(True, "add")[1] == "add"
    assert runner.offer(False, "auto") == ([], None)
    with pytest.raises(ConfigurationError, match="neither"):
        runner.offer(True, "subtract")
    with pytest.raises(ConfigurationError, match="needs tools"):
        runner.offer(False, "required")


@pytest.mark.timeout(30)
async def test_a_call_needing_approval_runs_once_approved(bus: MessageBus) -> None:
    ran: list[int] = []

    def launch(count: int) -> str:
        """Launch.

        Args:
            count: How many.
        """
        ran.append(count)
        return "launched"

    runner = ToolRunner(bus)
    runner.register(launch, requires_approval=True)
    requested: asyncio.Future[ToolApprovalRequestedEvent] = (
        asyncio.get_running_loop().create_future()
    )
    bus.register_event_handler(
        ToolApprovalRequestedEvent, lambda e: requested.done() or requested.set_result(e)
    )
    running = asyncio.ensure_future(runner.run(call("launch", '{"count": 3}'), "c", uuid.uuid4()))
    await asyncio.wait_for(requested, 10)
    assert ran == []
    assert (await bus.execute(ApproveToolCallCommand(call_id="id-launch"))).success
    assert await running == "launched"
    assert ran == [3]


def prompt_run(bus: MessageBus, provider: ScriptedProvider, **fields: Any) -> PromptRun:
    return PromptRun(
        PromptCommand(prompt="go", **fields),
        provider,
        Conversation("c"),
        ToolRunner(bus, [add]),
        options={},
        max_tool_rounds=1,
        max_output_retries=1,
        timeout=None,
        sink=None,
    )


async def test_a_run_does_tool_rounds_then_output_retries_and_keeps_only_what_counts(
    bus: MessageBus,
) -> None:
    provider = ScriptedProvider(
        [ScriptedProvider.call("add", a=1, b=2), '{"value": "x"}', '{"value": 3}']
    )
    run = prompt_run(bus, provider, output_type=Answer)
    result = await run.result()
    assert result.result == Answer(value=3)
    assert (result.metadata["rounds"], result.metadata["output_retries"]) == (3, 1)
    roles = [m.role for m in run.conversation.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]  # not the invalid answer
    assert "not a valid Answer" in (provider.requests[2].messages[-1].content or "")


async def test_a_run_stops_at_the_tool_round_limit_and_answers_every_call(
    bus: MessageBus,
) -> None:
    provider = ScriptedProvider(
        [ScriptedProvider.call("add", a=1, b=2), ScriptedProvider.call("add", a=3, b=4)]
    )
    run = prompt_run(bus, provider)
    result = await run.result()
    assert "Stopped after 1 rounds of tool calls" in result.result
    assert [m.role for m in run.conversation.messages][-2:] == ["tool", "assistant"]


async def test_a_run_fails_when_the_output_retries_are_spent(bus: MessageBus) -> None:
    run = prompt_run(bus, ScriptedProvider(["no", "still no"]), output_type=Answer)
    result = await run.result()
    assert not result.success
    assert result.error_type == StructuredOutputError.__name__
    assert "after 2 attempts" in (result.error or "")
    assert result.metadata["rounds"] == 2  # what the failed run spent stays known
    assert result.metadata["input_tokens"] > 0
    assert run.conversation.messages == []
