"""Approvals over a shared bus: a decision reaches the engine process where its call waits.

Two engine workers each run conversations whose first tool call is ``call_1_0`` (the
offline model's); the approving command reaches whichever process handles it first.
Every approval must run exactly the call it showed, once, in the process holding it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from conftest import StartWorker

from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer
from llmgine.llm import (
    ApproveToolCallCommand,
    LLMEngine,
    PromptCommand,
    ScriptedProvider,
    ToolApprovalDecidedEvent,
    ToolApprovalRequestedEvent,
    ToolApprovals,
)
from llmgine.llm.approval import ToolApprovalRelayedEvent
from llmgine.messages import CommandResult

CONVERSATIONS = 6


async def _all_waiting(
    caller: MessageBus, out: Path
) -> tuple[dict[str, ToolApprovalRequestedEvent], dict[str, asyncio.Future[CommandResult]]]:
    """Start one prompt per conversation on the workers; return their requests once all wait."""
    await asyncio.to_thread(out.mkdir)
    requests: dict[str, ToolApprovalRequestedEvent] = {}
    everyone = asyncio.Event()

    def seen(event: ToolApprovalRequestedEvent) -> None:
        requests[event.conversation_id] = event
        if len(requests) == CONVERSATIONS:
            everyone.set()

    caller.register_event_handler(ToolApprovalRequestedEvent, seen)
    prompts = {
        f"c{i}": asyncio.ensure_future(
            caller.execute(
                PromptCommand(prompt=f"write_marker path={out}/c{i}.txt", conversation_id=f"c{i}")
            )
        )
        for i in range(CONVERSATIONS)
    }
    await asyncio.wait_for(everyone.wait(), 60)
    assert {r.call_id for r in requests.values()} == {"call_1_0"}
    assert len({r.approval_id for r in requests.values()}) == CONVERSATIONS
    return requests, prompts


async def _decide_all_and_check(
    caller: MessageBus,
    requests: dict[str, ToolApprovalRequestedEvent],
    prompts: dict[str, asyncio.Future[CommandResult]],
    out: Path,
    workers: set[int],
) -> None:
    """Approve even conversations and deny odd ones, by approval id; check what ran where."""
    for i in range(CONVERSATIONS):
        request = requests[f"c{i}"]
        approve = i % 2 == 0
        command = ApproveToolCallCommand(approval_id=request.approval_id, approve=approve)
        decided = await caller.execute(command, timeout=30)
        verb = "approved" if approve else "denied"
        assert decided.success, decided.error
        assert decided.result == f"{verb} write_marker (call_1_0)"
        result = await asyncio.wait_for(prompts[f"c{i}"], 60)
        assert result.success, result.error
        assert f"c{i}.txt" in request.arguments
        # The others still wait for their own decisions.
        assert not any(prompts[f"c{j}"].done() for j in range(i + 1, CONVERSATIONS))
    markers = await asyncio.to_thread(_markers, out)
    assert sorted(markers) == [f"c{i}.txt" for i in range(0, CONVERSATIONS, 2)]
    for lines in markers.values():
        (line,) = lines  # run once
        assert int(line) in workers  # in an engine process (the one holding the call)


def _markers(out: Path) -> dict[str, list[str]]:
    """What each run of the tool wrote: file name, lines."""
    return {p.name: p.read_text().splitlines() for p in out.iterdir()}


@pytest.mark.timeout(240)
async def test_every_approval_runs_its_own_call_whichever_worker_takes_the_command(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    workers = {start_worker("approval_app:setup").pid for _ in range(2)}
    requests, prompts = await _all_waiting(caller, tmp_path / "out")
    await _decide_all_and_check(caller, requests, prompts, tmp_path / "out", workers)


@pytest.mark.timeout(240)
async def test_a_process_without_the_call_relays_the_decision_to_the_one_holding_it(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    workers = {start_worker("approval_app:setup").pid for _ in range(2)}
    # The caller decides itself (as a notebook's own engine does) but holds no call:
    # every decision must travel to the worker whose engine waits for it.
    approvals = ToolApprovals(caller)
    requests, prompts = await _all_waiting(caller, tmp_path / "out")
    assert approvals.pending == []
    assert len(approvals.waiting) == CONVERSATIONS  # heard from both workers

    refused = await caller.execute(ApproveToolCallCommand(call_id="call_1_0"))
    assert not refused.success and refused.error_type == "AmbiguousApprovalError"
    assert all(f"conversation 'c{i}'" in str(refused.error) for i in range(CONVERSATIONS))
    await _decide_all_and_check(caller, requests, prompts, tmp_path / "out", workers)

    again = await caller.execute(ApproveToolCallCommand(approval_id=requests["c0"].approval_id))
    assert not again.success
    assert "is no longer waiting: it was approved by another command" in str(again.error)


@pytest.mark.timeout(120)
async def test_a_decision_for_a_call_whose_process_died_fails_clearly_in_bounded_time(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    worker = start_worker("approval_app:setup")
    approvals = ToolApprovals(caller, relay_timeout=2.0)
    asked: asyncio.Future[ToolApprovalRequestedEvent] = asyncio.get_running_loop().create_future()
    caller.register_event_handler(
        ToolApprovalRequestedEvent, lambda e: asked.done() or asked.set_result(e)
    )
    prompt = asyncio.ensure_future(
        caller.execute(PromptCommand(prompt=f"write_marker path={tmp_path}/x.txt"))
    )
    request = await asyncio.wait_for(asked, 60)
    await asyncio.to_thread(worker.kill)
    result = await caller.execute(ApproveToolCallCommand(approval_id=request.approval_id))
    assert not result.success and result.error_type == "ApprovalNotFoundError"
    assert "no process of the shared bus applied the decision" in str(result.error)
    assert "within 2 s" in str(result.error)
    assert approvals.pending == []
    prompt.cancel()


def delete_file(path: str) -> str:
    """Delete a file (here: only say so).

    Args:
        path: The file.
    """
    return f"deleted {path}"


Seen = tuple[
    ToolApprovals,
    "asyncio.Queue[ToolApprovalRequestedEvent]",
    "asyncio.Queue[ToolApprovalDecidedEvent]",
]


async def _engine_process(
    caller: MessageBus, redis_server: RedisServer, namespace: str, script: list[Any]
) -> tuple[MessageBus, Seen]:
    """Another process's engine (a second bus on the same Redis) whose calls wait forever.

    Returns its bus, connected, and what the caller sees: its approvals, and queues of
    the requests and decisions it hears (each process has heard of the other's handlers).
    """
    engine_bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    engine = LLMEngine(engine_bus, provider=ScriptedProvider(script))
    engine.register_tool(delete_file, requires_approval=True)
    engine.approvals.timeout = None
    approvals = ToolApprovals(caller, relay_timeout=30.0)
    requests: asyncio.Queue[ToolApprovalRequestedEvent] = asyncio.Queue()
    decisions: asyncio.Queue[ToolApprovalDecidedEvent] = asyncio.Queue()
    caller.register_event_handler(ToolApprovalRequestedEvent, requests.put_nowait)
    caller.register_event_handler(ToolApprovalDecidedEvent, decisions.put_nowait)
    await engine_bus.connect(redis_server.url, namespace, heartbeat=0.2)
    assert engine_bus.remote is not None and caller.remote is not None
    await asyncio.wait_for(
        engine_bus.remote.wait_for_listener(ToolApprovalRequestedEvent), timeout=30
    )
    await asyncio.wait_for(caller.remote.wait_for_listener(ToolApprovalRelayedEvent), timeout=30)
    return engine_bus, (approvals, requests, decisions)


@pytest.mark.timeout(120)
async def test_a_stopped_prompt_leaves_no_waiting_call_in_the_other_processes(
    caller: MessageBus, redis_server: RedisServer, namespace: str
) -> None:
    # Another process's engine (a second bus over the same Redis); its calls wait forever.
    calls = [ScriptedProvider.call("delete_file", call_id="c1", path=p) for p in ("a", "b")]
    engine_bus, seen = await _engine_process(caller, redis_server, namespace, [*calls, "done"])
    approvals, requests, decisions = seen
    try:
        stopped = await engine_bus.execute(
            PromptCommand(prompt="x", conversation_id="A"), timeout=3
        )
        assert not stopped.success  # the user stopped it while its call waited
        ghost = await asyncio.wait_for(requests.get(), 30)
        # The withdrawal reaches this process: it forgets the call.
        withdrawn = await asyncio.wait_for(decisions.get(), 30)
        assert (withdrawn.approval_id, withdrawn.decided_by) == (ghost.approval_id, "cancelled")
        assert approvals.waiting == []

        # A new conversation's c1 is the only c1: deciding it by call_id is not ambiguous.
        prompt = asyncio.ensure_future(
            engine_bus.execute(PromptCommand(prompt="y", conversation_id="B"))
        )
        fresh = await asyncio.wait_for(requests.get(), 30)
        approved = await caller.execute(ApproveToolCallCommand(call_id="c1"), timeout=30)
        assert approved.success, approved.error
        assert (await asyncio.wait_for(prompt, 30)).result == "done"
        assert [w.approval_id for w in approvals.waiting] == []
        assert fresh.conversation_id == "B"

        # Deciding the withdrawn call fails at once, saying why (no relay timeout).
        late = await caller.execute(ApproveToolCallCommand(approval_id=ghost.approval_id))
        assert not late.success
        assert "the prompt ended (stopped or timed out) before a decision" in str(late.error)
        assert late.duration_ms < 5000
    finally:
        await engine_bus.stop()


@pytest.mark.timeout(120)
async def test_stopping_the_engine_process_ends_a_remote_prompts_wait_and_tells_everyone(
    caller: MessageBus, redis_server: RedisServer, namespace: str
) -> None:
    # The caller has no engine: its prompt runs in the engine process, whose call waits.
    script = [ScriptedProvider.call("delete_file", path="a")]
    engine_bus, seen = await _engine_process(caller, redis_server, namespace, script)
    approvals, requests, decisions = seen
    try:
        assert caller.remote is not None
        await asyncio.wait_for(caller.remote.refresh(), 30)
        prompt = asyncio.ensure_future(caller.execute(PromptCommand(prompt="x")))
        request = await asyncio.wait_for(requests.get(), 30)
        # stop() withdraws the call first, while connected: the prompt ends, its result
        # goes back to the caller, and only then does the engine process leave.
        await asyncio.wait_for(engine_bus.stop(), 30)
        result = await asyncio.wait_for(prompt, 30)
        assert (result.success, result.error_type) == (False, "ApprovalWithdrawnError")
        withdrawn = await asyncio.wait_for(decisions.get(), 30)
        assert (withdrawn.approval_id, withdrawn.decided_by) == (request.approval_id, "cancelled")
        assert approvals.waiting == []
    finally:
        await engine_bus.stop()
