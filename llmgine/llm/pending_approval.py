"""A tool call waiting for a person in this process, and the words that describe its state.

:class:`~llmgine.llm.tool_approvals.ToolApprovals` keeps these; the approval messages
themselves live in :mod:`llmgine.llm.approval`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import NamedTuple
from uuid import UUID

from llmgine.llm.approval import (
    ToolApprovalDecidedEvent,
    ToolApprovalRequestedEvent,
    _new_id,
    describe_request,
)

__all__ = [
    "ENDED_FIRST",
    "Decision",
    "PendingApproval",
    "ambiguous_call",
    "key_mismatch",
    "no_longer_waiting",
    "settle",
    "waiting_now",
]

ENDED_FIRST = "the prompt ended (stopped or timed out) before a decision; the call did not run"
"""The reason of a call withdrawn with its prompt (``decided_by="cancelled"``)."""


class Decision(NamedTuple):
    """What a person (through a command) decided on a waiting call."""

    approved: bool
    reason: str | None
    command_id: UUID | None
    withdrawn: bool = False
    """Not a person's: ``bus.stop()`` ended the wait (the prompt fails)."""


@dataclass
class PendingApproval:
    """A tool call waiting for a decision in this process."""

    call_id: str
    tool_name: str
    arguments: str
    conversation_id: str
    prompt_id: UUID
    decision: asyncio.Future[Decision] = field(repr=False)
    approval_id: str = field(default_factory=_new_id)
    ended: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    """Set once the wait is over and its decision is published."""


def waiting_now(requests: list[ToolApprovalRequestedEvent]) -> str:
    """The waiting calls, one description each, for an error message (``"none"`` if none)."""
    return "; ".join(describe_request(r) for r in requests) or "none"


def no_longer_waiting(decided: ToolApprovalDecidedEvent) -> str:
    """Why a decided call can be decided no more: approved, denied, timed out or withdrawn."""
    if decided.decided_by == "timeout":
        verdict = "it timed out without a decision"
    elif decided.decided_by == "cancelled":
        verdict = f"{decided.reason or ENDED_FIRST}. Ask again in a new prompt"
    else:
        verdict = (
            f"it was {'approved' if decided.approved else 'denied'} by another command "
            f"(already decided by command {decided.command_id})"
        )
    return (
        f"tool call {decided.call_id!r} ({decided.tool_name} in conversation "
        f"{decided.conversation_id!r}, approval_id {decided.approval_id}) is no longer "
        f"waiting: {verdict}"
    )


def ambiguous_call(
    call_id: str | None,
    conversation_id: str | None,
    matches: list[ToolApprovalRequestedEvent],
) -> str:
    """Why ``call_id`` names no one call: what tells the matching calls apart.

    Conversation ids are suggested only when they were not given and they differ;
    the approval id always tells the calls apart.
    """
    where = f" in conversation {conversation_id!r}" if conversation_id is not None else ""
    conversations = {r.conversation_id for r in matches}
    narrow = (
        " (or give conversation_id=...)"
        if conversation_id is None and len(conversations) == len(matches)
        else ""
    )
    return (
        f"{len(matches)} tool calls {call_id!r}{where} wait for approval; name one by its "
        f"approval_id=...{narrow}, which tells them apart: {waiting_now(matches)}"
    )


def key_mismatch(
    call_id: str | None,
    conversation_id: str | None,
    call: ToolApprovalRequestedEvent | ToolApprovalDecidedEvent | PendingApproval,
) -> str:
    """Which given key is not the call's ("" if every key given matches)."""
    if call_id and call_id != call.call_id:
        return f"call {call.call_id!r}, not call_id {call_id!r}"
    if conversation_id is not None and conversation_id != call.conversation_id:
        return f"conversation {call.conversation_id!r}, not conversation_id {conversation_id!r}"
    return ""


def settle(future: asyncio.Future[Decision], decision: Decision) -> None:
    """Give ``future`` its decision, from its own loop's thread or any other."""
    loop = future.get_loop()
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - handlers always run on a loop
        running = None
    if running is loop:
        if not future.done():
            future.set_result(decision)
    else:
        loop.call_soon_threadsafe(_set, future, decision)


def _set(future: asyncio.Future[Decision], decision: Decision) -> None:
    if not future.done():
        future.set_result(decision)
