"""How a wait for approval ends without a decision: its timeout, the prompt's, bus.stop()."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from approval_tools import delete_file, ran

from llmgine import (
    ApprovalTimeoutError,
    ApprovalWithdrawnError,
    ApproveToolCallCommand,
    BusStateError,
    ConfigurationError,
    LLMEngine,
    MessageBus,
    PromptCommand,
    ScriptedProvider,
    ToolApprovalDecidedEvent,
    ToolApprovalRequestedEvent,
)
from llmgine.llm.approval_wait import BUS_STOPPED
from llmgine.llm.tool_approvals import ToolApprovals


@pytest.fixture(autouse=True)
def _nothing_ran() -> None:
    ran.clear()


def _engine(bus: MessageBus, *script: Any) -> tuple[LLMEngine, ScriptedProvider]:
    provider = ScriptedProvider(list(script))
    engine = LLMEngine(bus, provider=provider)
    engine.register_tool(delete_file, requires_approval=True)
    engine.approvals.timeout = None  # waits as long as it takes
    return engine, provider


# ---------------------------------------------------------------- the approval timeout itself


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, "5", True])
async def test_an_approval_timeout_that_is_not_a_positive_finite_number_is_refused(
    bus: MessageBus, bad: Any
) -> None:
    engine, _ = _engine(bus)
    with pytest.raises(ConfigurationError, match=r"engine\.approvals\.timeout must be"):
        engine.approvals.timeout = bad
    assert engine.approvals.timeout is None  # unchanged
    with pytest.raises(ConfigurationError, match="or None"):
        ToolApprovals(bus, timeout=bad)


async def test_a_positive_approval_timeout_or_none_is_kept(bus: MessageBus) -> None:
    engine, _ = _engine(bus)
    for good in (0.05, 3, 300.0, None):
        engine.approvals.timeout = good
        assert engine.approvals.timeout == good


def test_by_default_an_unanswered_call_is_denied_before_its_prompt_times_out(
    bus: MessageBus,
) -> None:
    from llmgine.llm import LLMEngine

    engine = LLMEngine(bus, model="offline")
    assert engine.timeout is not None and engine.approvals.timeout is not None
    assert engine.approvals.timeout < engine.timeout  # the README: "goes back to the model"


# ---------------------------------------------------------------- the prompt's timeout


@pytest.mark.timeout(30)
async def test_a_prompt_whose_timeout_runs_out_in_an_approval_says_so_not_the_provider(
    bus: MessageBus,
) -> None:
    engine, provider = _engine(bus, ScriptedProvider.call("delete_file", path="a.txt"), "never")
    decisions: list[ToolApprovalDecidedEvent] = []
    bus.register_event_handler(ToolApprovalDecidedEvent, decisions.append)
    result = await bus.execute(PromptCommand(prompt="delete a.txt", timeout=0.5))
    assert not result.success and result.error_type == "ApprovalTimeoutError"
    error = str(result.error)
    assert "The prompt's timeout of 0.5 s ran out while delete_file" in error
    assert "waited for a person's approval; the call did not run" in error
    assert "engine.approvals.timeout below the prompt's timeout" in error
    assert "timeout=... on the prompt or on the LLMEngine" in error
    assert issubclass(ApprovalTimeoutError, TimeoutError)  # what `except TimeoutError` caught
    await bus.wait_for_events()
    assert [d.decided_by for d in decisions] == ["cancelled"]
    assert engine.approvals.pending == [] and ran == [] and len(provider.requests) == 1


# ---------------------------------------------------------------- bus.stop()


@pytest.mark.timeout(60)
async def test_stopping_the_bus_withdraws_waiting_calls_and_their_prompts_end_without_a_model_call(
    bus: MessageBus,
) -> None:
    engine, provider = _engine(
        bus,
        ScriptedProvider.call("delete_file", call_id="c1", path="a.txt"),
        ScriptedProvider.call("delete_file", call_id="c2", path="b.txt"),
        "never reached",
        "never reached",
    )
    engine.approvals.timeout = 300.0
    requested: list[ToolApprovalRequestedEvent] = []
    both = asyncio.Event()

    def seen(event: ToolApprovalRequestedEvent) -> None:
        requested.append(event)
        if len(requested) == 2:
            both.set()

    bus.register_event_handler(ToolApprovalRequestedEvent, seen)
    decisions: list[ToolApprovalDecidedEvent] = []
    bus.register_event_handler(ToolApprovalDecidedEvent, decisions.append)
    prompts = [
        asyncio.ensure_future(bus.execute(PromptCommand(prompt="go", conversation_id=c)))
        for c in ("a", "b")
    ]
    await asyncio.wait_for(both.wait(), 10)

    await asyncio.wait_for(bus.stop(), 20)
    assert engine.approvals.pending == []
    results = await asyncio.wait_for(asyncio.gather(*prompts), 10)
    assert [r.error_type for r in results] == ["ApprovalWithdrawnError"] * 2
    assert "the bus stopped while the call" in str(results[0].error)
    assert "Start the bus and send the prompt again" in str(results[0].error)
    assert issubclass(ApprovalWithdrawnError, BusStateError)
    assert len(provider.requests) == 2 and ran == []  # no model call after stop()

    await bus.start()  # the decisions published during stop() are delivered now
    await bus.wait_for_events()
    assert sorted((d.call_id, d.decided_by, d.reason) for d in decisions) == [
        ("c1", "cancelled", BUS_STOPPED),
        ("c2", "cancelled", BUS_STOPPED),
    ]
    late = await bus.execute(ApproveToolCallCommand(approval_id=requested[0].approval_id))
    assert not late.success and "the bus stopped before a decision" in str(late.error)
