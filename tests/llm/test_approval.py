"""Tool approval, headless: a prompt waits for ApproveToolCallCommand; denials reach the model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from approval_tools import delete_file, ran

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


# ---------------------------------------------------------------- one key per request


def _offline_engine(bus: MessageBus) -> LLMEngine:
    """The offline model: its first call in every conversation is ``call_1_0``."""
    engine = LLMEngine(bus, model="offline")
    engine.register_tool(delete_file, requires_approval=True)
    engine.approvals.timeout = 60.0
    return engine


async def _two_waiting(
    bus: MessageBus,
) -> tuple[dict[str, ToolApprovalRequestedEvent], dict[str, asyncio.Future[Any]]]:
    """Conversations "notes" and "thesis" each wait for approval of their ``call_1_0``."""
    requests: dict[str, ToolApprovalRequestedEvent] = {}
    both = asyncio.Event()

    def seen(event: ToolApprovalRequestedEvent) -> None:
        requests[event.conversation_id] = event
        if len(requests) == 2:
            both.set()

    bus.register_event_handler(ToolApprovalRequestedEvent, seen)
    prompts = {
        "notes": asyncio.ensure_future(
            bus.execute(PromptCommand(prompt="delete_file path=notes.txt", conversation_id="notes"))
        ),
        "thesis": asyncio.ensure_future(
            bus.execute(
                PromptCommand(
                    prompt="delete_file path=/home/user/thesis.tex", conversation_id="thesis"
                )
            )
        ),
    }
    await asyncio.wait_for(both.wait(), 10)
    assert {r.call_id for r in requests.values()} == {"call_1_0"}  # the same id twice
    return requests, prompts


@pytest.mark.timeout(60)
async def test_approving_one_conversations_call_runs_exactly_that_call(bus: MessageBus) -> None:
    engine = _offline_engine(bus)
    requests, prompts = await _two_waiting(bus)
    notes, thesis = requests["notes"], requests["thesis"]
    assert notes.arguments == '{"path": "notes.txt"}'
    assert notes.approval_id != thesis.approval_id
    assert sorted(p.approval_id for p in engine.approvals.pending) == sorted(
        [notes.approval_id, thesis.approval_id]
    )

    decided = await bus.execute(ApproveToolCallCommand(approval_id=notes.approval_id))
    assert decided.success, decided.error
    assert decided.result == "approved delete_file (call_1_0)"
    assert (await prompts["notes"]).success
    assert ran == ["notes.txt"]  # its own arguments, never the other conversation's
    assert not prompts["thesis"].done()  # the other still waits, for its own decision
    assert [p.approval_id for p in engine.approvals.pending] == [thesis.approval_id]

    denied = await bus.execute(
        ApproveToolCallCommand(approval_id=thesis.approval_id, approve=False, reason="no")
    )
    assert denied.success and denied.result == "denied delete_file (call_1_0)"
    result = await prompts["thesis"]
    assert result.success and "the user denied the call: no" in str(result.result)
    assert ran == ["notes.txt"]
    assert engine.approvals.pending == []


@pytest.mark.timeout(60)
async def test_two_calls_of_one_id_in_the_given_conversation_are_told_apart_by_approval_id(
    bus: MessageBus,
) -> None:
    engine = _offline_engine(bus)
    waiting: list[ToolApprovalRequestedEvent] = []
    both = asyncio.Event()

    def seen(event: ToolApprovalRequestedEvent) -> None:
        waiting.append(event)
        if len(waiting) == 2:
            both.set()

    bus.register_event_handler(ToolApprovalRequestedEvent, seen)
    prompts = [
        asyncio.ensure_future(
            bus.execute(PromptCommand(prompt=f"delete_file path={p}", conversation_id="same"))
        )
        for p in ("a.txt", "b.txt")
    ]
    await asyncio.wait_for(both.wait(), 10)
    assert {r.call_id for r in waiting} == {"call_1_0"}

    refused = await bus.execute(ApproveToolCallCommand(call_id="call_1_0", conversation_id="same"))
    assert refused.error_type == "AmbiguousApprovalError"
    error = str(refused.error)
    assert "2 tool calls 'call_1_0' in conversation 'same' wait for approval" in error
    assert "conversation_id=" not in error  # it was given, and tells nothing apart
    assert "approval_id=..." in error
    for request in waiting:
        assert request.approval_id in error
    for request in waiting:
        denied = ApproveToolCallCommand(approval_id=request.approval_id, approve=False)
        assert (await bus.execute(denied)).success
    await asyncio.gather(*prompts)
    assert ran == [] and engine.approvals.pending == []


@pytest.mark.timeout(60)
async def test_a_call_id_waiting_in_two_conversations_is_refused_not_guessed(
    bus: MessageBus,
) -> None:
    engine = _offline_engine(bus)
    _, prompts = await _two_waiting(bus)

    refused = await bus.execute(ApproveToolCallCommand(call_id="call_1_0"))
    assert not refused.success
    assert refused.error_type == "AmbiguousApprovalError"
    error = str(refused.error)
    assert "2 tool calls 'call_1_0' wait for approval" in error
    assert "approval_id" in error
    for shown in ("'notes'", "'thesis'", '{"path": "notes.txt"}', "/home/user/thesis.tex"):
        assert shown in error  # every waiting call, with its conversation and arguments
    assert len(engine.approvals.pending) == 2 and ran == []

    # conversation_id narrows a call id down to one call: that one runs.
    narrowed = ApproveToolCallCommand(call_id="call_1_0", conversation_id="thesis")
    assert (await bus.execute(narrowed)).success
    assert (await prompts["thesis"]).success
    assert ran == ["/home/user/thesis.tex"]
    # Now the call id is unique again, as the README's call_id=... shows.
    assert (await bus.execute(ApproveToolCallCommand(call_id="call_1_0"))).success
    assert (await prompts["notes"]).success
    assert ran == ["/home/user/thesis.tex", "notes.txt"]


@pytest.mark.timeout(30)
async def test_a_key_that_names_no_waiting_call_fails_clearly(bus: MessageBus) -> None:
    from uuid import uuid4

    _offline_engine(bus)
    unknown = str(uuid4())
    result = await bus.execute(ApproveToolCallCommand(approval_id=unknown))
    assert not result.success
    assert result.error_type == "ApprovalNotFoundError"
    assert f"no tool call with approval_id {unknown} is waiting for approval" in str(result.error)
    narrowed = await bus.execute(ApproveToolCallCommand(call_id="c1", conversation_id="x"))
    assert "no tool call 'c1' in conversation 'x' is waiting" in str(narrowed.error)
    with pytest.raises(ValueError, match="name the tool call: approval_id"):
        ApproveToolCallCommand(approve=True)


@pytest.mark.timeout(30)
async def test_a_decided_call_cannot_be_decided_again(bus: MessageBus) -> None:
    _engine(bus, "Done.")
    requested = await _requested(bus)
    prompt = asyncio.ensure_future(bus.execute(PromptCommand(prompt="delete a.txt")))
    event = await asyncio.wait_for(requested, 10)
    assert (await bus.execute(ApproveToolCallCommand(approval_id=event.approval_id))).success
    await prompt
    await bus.wait_for_events()
    again = await bus.execute(ApproveToolCallCommand(approval_id=event.approval_id, approve=False))
    assert not again.success
    assert "is no longer waiting: it was approved by another command" in str(again.error)
    assert ran == ["a.txt"]


@pytest.mark.timeout(60)
async def test_a_second_engine_on_the_bus_can_still_decide_the_first_ones_waiting_call(
    bus: MessageBus,
) -> None:
    first = _engine(bus, "Done.")
    requested = await _requested(bus)
    prompt = asyncio.ensure_future(bus.execute(PromptCommand(prompt="delete a.txt")))
    event = await asyncio.wait_for(requested, 10)
    second = LLMEngine(bus, model="offline")  # takes over the bus (a notebook's new engine)
    assert [p.approval_id for p in second.approvals.pending] == [event.approval_id]
    assert (await bus.execute(ApproveToolCallCommand(approval_id=event.approval_id))).success
    assert (await prompt).result == "Done."
    assert first.approvals.pending == [] and ran == ["a.txt"]


# ---------------------------------------------------------------- a prompt that ends first


@pytest.mark.timeout(30)
async def test_a_stopped_prompt_withdraws_its_waiting_call_with_a_logged_decision(
    bus: MessageBus, read_log: Callable[[Path | None], list[dict[str, Any]]]
) -> None:
    engine = _engine(bus, "never reached", timeout=None)  # waits as long as it takes
    decisions: list[ToolApprovalDecidedEvent] = []
    bus.register_event_handler(ToolApprovalDecidedEvent, decisions.append)
    requested = await _requested(bus)
    prompt = asyncio.ensure_future(bus.execute(PromptCommand(prompt="delete a.txt"), timeout=30))
    event = await asyncio.wait_for(requested, 10)
    prompt.cancel()  # the user stops the reply
    with pytest.raises(asyncio.CancelledError):
        await prompt
    await bus.wait_for_events()

    (decided,) = decisions
    assert (decided.approval_id, decided.decided_by) == (event.approval_id, "cancelled")
    assert decided.approved is False and decided.call_id == "c1"
    assert decided.reason is not None and "did not run" in decided.reason
    assert engine.approvals.pending == [] and engine.approvals.waiting == []
    late = await bus.execute(ApproveToolCallCommand(approval_id=event.approval_id))
    assert not late.success and late.error_type == "ApprovalNotFoundError"
    ended = "is no longer waiting: the prompt ended (stopped or timed out) before a decision"
    assert ended in str(late.error)
    assert ran == []
    types = [line["type"] for line in read_log(bus.log_path)]
    assert types.count("ToolApprovalDecidedEvent") == 1  # every request ends with a decision


@pytest.mark.timeout(30)
async def test_a_prompt_that_times_out_withdraws_its_waiting_call(bus: MessageBus) -> None:
    _engine(bus, "never reached", timeout=None)
    decisions: list[ToolApprovalDecidedEvent] = []
    bus.register_event_handler(ToolApprovalDecidedEvent, decisions.append)
    result = await bus.execute(PromptCommand(prompt="delete a.txt"), timeout=0.5)
    assert not result.success
    await bus.wait_for_events()
    assert [d.decided_by for d in decisions] == ["cancelled"]
    assert ran == []


# ---------------------------------------------------------------- every key must match


@pytest.mark.timeout(60)
async def test_an_approval_id_with_another_calls_conversation_or_call_id_decides_nothing(
    bus: MessageBus,
) -> None:
    engine = _offline_engine(bus)
    requests, prompts = await _two_waiting(bus)
    notes = requests["notes"]

    wrong_conversation = ApproveToolCallCommand(
        approval_id=notes.approval_id, conversation_id="thesis"
    )
    refused = await bus.execute(wrong_conversation)
    assert not refused.success and refused.error_type == "ApprovalNotFoundError"
    assert (
        f"approval_id {notes.approval_id} is for conversation 'notes', not conversation_id "
        "'thesis'; nothing was decided"
    ) in str(refused.error)
    wrong_call = ApproveToolCallCommand(approval_id=notes.approval_id, call_id="call_9_9")
    refused = await bus.execute(wrong_call)
    assert not refused.success and refused.error_type == "ApprovalNotFoundError"
    assert "is for call 'call_1_0', not call_id 'call_9_9'" in str(refused.error)
    assert len(engine.approvals.pending) == 2 and ran == []
    assert not prompts["notes"].done() and not prompts["thesis"].done()

    # Every key given matches: decided.
    right = ApproveToolCallCommand(
        approval_id=notes.approval_id, call_id="call_1_0", conversation_id="notes"
    )
    assert (await bus.execute(right)).success
    assert (await prompts["notes"]).success and ran == ["notes.txt"]
    prompts["thesis"].cancel()


# ---------------------------------------------------------------- right after a decision


@pytest.mark.timeout(60)
async def test_a_call_decided_a_moment_ago_is_already_decided_and_matches_no_call_id(
    bus: MessageBus,
) -> None:
    _offline_engine(bus)
    requests, prompts = await _two_waiting(bus)
    notes, thesis = requests["notes"], requests["thesis"]

    assert (await bus.execute(ApproveToolCallCommand(approval_id=notes.approval_id))).success
    # At once, before the prompt resumes: the call is decided, not "not waiting".
    again = await bus.execute(ApproveToolCallCommand(approval_id=notes.approval_id))
    assert not again.success and again.error_type == "ApprovalNotFoundError"
    error = str(again.error)
    assert "is no longer waiting: it was approved by another command (already decided" in error
    assert "waiting now" not in error
    # call_1_0 now names one waiting call (thesis's), not two.
    denied = await bus.execute(ApproveToolCallCommand(call_id="call_1_0", approve=False))
    assert denied.success, denied.error
    assert denied.result == "denied delete_file (call_1_0)"
    after_denial = await bus.execute(ApproveToolCallCommand(approval_id=thesis.approval_id))
    assert not after_denial.success
    assert "it was denied by another command (already decided" in str(after_denial.error)

    assert (await prompts["notes"]).success and (await prompts["thesis"]).success
    assert ran == ["notes.txt"]


def test_the_approval_modules_stay_small_one_concept_each() -> None:
    import llmgine.llm.approval
    import llmgine.llm.approval_wait
    import llmgine.llm.pending_approval
    import llmgine.llm.tool_approvals

    modules = (
        llmgine.llm.approval,
        llmgine.llm.approval_wait,
        llmgine.llm.pending_approval,
        llmgine.llm.tool_approvals,
    )
    lengths = {m.__name__: len(Path(m.__file__ or "").read_text().splitlines()) for m in modules}
    assert {name: n for name, n in lengths.items() if n > 400} == {}
