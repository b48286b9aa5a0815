"""Tool approval, headless: a prompt waits for ApproveToolCallCommand; denials reach the model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmgine import (
    ApproveToolCallCommand,
    LLMEngine,
    MessageBus,
    PromptCommand,
    ScriptedProvider,
    ToolApprovalDecidedEvent,
    ToolApprovalRequestedEvent,
    ToolResultEvent,
    tool,
)

ran: list[str] = []


def delete_file(path: str) -> str:
    """Delete a file.

    Args:
        path: The file.
    """
    ran.append(path)
    return f"deleted {path}"


@pytest.fixture(autouse=True)
def _nothing_ran() -> None:
    ran.clear()


def _engine(bus: MessageBus, *replies: Any, timeout: float | None = 30.0) -> LLMEngine:
    script = [ScriptedProvider.call("delete_file", call_id="c1", path="a.txt"), *replies]
    engine = LLMEngine(bus, provider=ScriptedProvider(script))
    engine.register_tool(delete_file, requires_approval=True)
    engine.approvals.timeout = timeout
    return engine


async def _requested(bus: MessageBus) -> asyncio.Future[ToolApprovalRequestedEvent]:
    seen: asyncio.Future[ToolApprovalRequestedEvent] = asyncio.get_running_loop().create_future()
    bus.register_event_handler(
        ToolApprovalRequestedEvent, lambda e: seen.done() or seen.set_result(e)
    )
    return seen


@pytest.mark.timeout(30)
async def test_an_approved_call_runs_after_the_approving_command(
    bus: MessageBus, read_log: Callable[[Path | None], list[dict[str, Any]]]
) -> None:
    engine = _engine(bus, "Done: the file is gone.")
    requested = await _requested(bus)
    prompt = asyncio.ensure_future(bus.execute(PromptCommand(prompt="delete a.txt")))
    event = await asyncio.wait_for(requested, 10)
    assert (event.call_id, event.tool_name, event.timeout) == ("c1", "delete_file", 30.0)
    assert event.arguments == '{"path": "a.txt"}'
    assert [p.call_id for p in engine.approvals.pending] == ["c1"]
    assert ran == []  # nothing runs before the approval
    decided = await bus.execute(ApproveToolCallCommand(call_id="c1"))
    assert decided.success and decided.result == "approved delete_file (c1)"
    result = await prompt
    assert result.result == "Done: the file is gone."
    assert ran == ["a.txt"]
    assert engine.approvals.pending == []
    await bus.wait_for_events()
    types = [line["type"] for line in read_log(bus.log_path)]
    assert types.index("ToolApprovalRequestedEvent") < types.index("ApproveToolCallCommand")
    assert types.index("ToolApprovalDecidedEvent") < types.index("ToolResultEvent")


@pytest.mark.timeout(30)
async def test_a_denial_goes_back_to_the_model_as_the_tools_error(bus: MessageBus) -> None:
    provider_engine = _engine(bus, "I did not delete it.")
    results: list[ToolResultEvent] = []
    decisions: list[ToolApprovalDecidedEvent] = []
    bus.register_event_handler(ToolResultEvent, results.append)
    bus.register_event_handler(ToolApprovalDecidedEvent, decisions.append)
    requested = await _requested(bus)
    prompt = asyncio.ensure_future(bus.execute(PromptCommand(prompt="delete a.txt")))
    await asyncio.wait_for(requested, 10)
    await bus.execute(ApproveToolCallCommand(call_id="c1", approve=False, reason="keep it"))
    assert (await prompt).result == "I did not delete it."
    await bus.wait_for_events()
    assert ran == []
    expected = "delete_file was not run: the user denied the call: keep it"
    assert results[0].error == expected
    assert decisions[0].approved is False and decisions[0].decided_by == "command"
    provider = provider_engine.provider
    assert isinstance(provider, ScriptedProvider)
    assert provider.requests[1].messages[-1].content == f"Error: {expected}"


@pytest.mark.timeout(30)
async def test_no_decision_within_the_timeout_counts_as_a_denial(bus: MessageBus) -> None:
    _engine(bus, "Nobody answered.", timeout=0.05)
    results: list[ToolResultEvent] = []
    decisions: list[ToolApprovalDecidedEvent] = []
    bus.register_event_handler(ToolResultEvent, results.append)
    bus.register_event_handler(ToolApprovalDecidedEvent, decisions.append)
    assert (await bus.execute(PromptCommand(prompt="delete"))).result == "Nobody answered."
    await bus.wait_for_events()
    assert ran == []
    assert results[0].error == ("delete_file was not run: nobody approved the call within 0.05 s")
    assert decisions[0].decided_by == "timeout"
    late = await bus.execute(ApproveToolCallCommand(call_id="c1"))
    assert not late.success
    assert "no tool call 'c1' is waiting for approval" in str(late.error)


@pytest.mark.timeout(30)
async def test_tools_without_the_flag_run_at_once_and_the_decorators_take_it(
    bus: MessageBus,
) -> None:
    engine = LLMEngine(
        bus,
        provider=ScriptedProvider([ScriptedProvider.call("free", x=1), "ok"]),
    )

    @engine.tool
    def free(x: int) -> int:
        """Free to call."""
        return x

    @engine.tool(requires_approval=True)
    def guarded(x: int) -> int:
        """Needs a yes."""
        return x

    @tool(requires_approval=True)
    def marked(x: int) -> int:
        """Marked as needing a yes."""
        return x

    assert engine.register_tool(marked).requires_approval
    assert engine.tools.get("guarded").requires_approval  # type: ignore[union-attr]
    assert not engine.tools.get("free").requires_approval  # type: ignore[union-attr]
    assert (await bus.execute(PromptCommand(prompt="go"))).result == "ok"


@pytest.mark.timeout(30)
async def test_invalid_arguments_fail_before_anyone_is_asked(bus: MessageBus) -> None:
    script = [ScriptedProvider.call("delete_file", call_id="c9", wrong=1), "bad call"]
    engine = LLMEngine(bus, provider=ScriptedProvider(script))
    engine.register_tool(delete_file, requires_approval=True)
    asked: list[ToolApprovalRequestedEvent] = []
    bus.register_event_handler(ToolApprovalRequestedEvent, asked.append)
    assert (await bus.execute(PromptCommand(prompt="x"))).result == "bad call"
    await bus.wait_for_events()
    assert asked == []
