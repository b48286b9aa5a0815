"""``%llmgine approve`` / ``deny``: decide tool calls that wait for a person."""

from __future__ import annotations

from typing import Any

from llmgine.llm.approval import ApproveToolCallCommand
from llmgine.notebook.runtime import get_runtime
from llmgine.notebook.subcommands import MagicError, Note
from llmgine.notebook.sync import run_sync

__all__ = ["approve", "deny"]


def _decide(line: str, approve: bool) -> Note:
    verb = "approve" if approve else "deny"
    call_id, _, reason = line.strip().partition(" ")
    engine = get_runtime().get_engine()
    waiting = engine.approvals.pending
    if not call_id:
        if len(waiting) != 1:
            ids = ", ".join(f"`{p.call_id}` ({p.tool_name})" for p in waiting) or "none"
            raise MagicError(
                f"give the call id: `%llmgine {verb} CALL_ID`; waiting for approval: {ids}"
            )
        call_id = waiting[0].call_id
    if approve and reason.strip():
        raise MagicError(f"`%llmgine approve` takes only a call id; got {reason.strip()!r} too")
    command = ApproveToolCallCommand(
        call_id=call_id, approve=approve, reason=reason.strip() or None
    )
    result = run_sync(engine.bus.execute(command))
    if not result.success:
        raise MagicError(str(result.error))
    run_sync(engine.bus.wait_for_events())
    return Note(str(result.result))


def approve(shell: Any, line: str, cell: str | None) -> Any:
    """``%llmgine approve [CALL_ID]``: run a waiting tool call."""
    return _decide(line, approve=True)


def deny(shell: Any, line: str, cell: str | None) -> Any:
    """``%llmgine deny [CALL_ID [REASON]]``: refuse a waiting tool call; the model is told."""
    return _decide(line, approve=False)
