"""Tool approval: a person approves or denies a tool call before it runs (human in the loop).

A tool registered with ``requires_approval=True`` pauses its prompt: the engine
publishes a :class:`ToolApprovalRequestedEvent` and waits for an
:class:`ApproveToolCallCommand` with the same ``call_id`` (the chat panel's
Approve / Deny buttons, ``%llmgine approve CALL_ID``, or any code on the bus).
A denial or a timeout becomes the tool's error, sent back to the model; every
decision is logged as a :class:`ToolApprovalDecidedEvent`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

from llmgine.bus.bus import MessageBus
from llmgine.errors import ToolError
from llmgine.llm.types import ToolCall
from llmgine.messages.commands import Command
from llmgine.messages.events import Event

__all__ = [
    "ApproveToolCallCommand",
    "PendingApproval",
    "ToolApprovalDecidedEvent",
    "ToolApprovalRequestedEvent",
    "ToolApprovals",
]

logger = logging.getLogger(__name__)

DEFAULT_APPROVAL_TIMEOUT = 300.0


class ToolApprovalRequestedEvent(Event):
    """A tool call waits for a person: answer with ``ApproveToolCallCommand(call_id=...)``."""

    call_id: str
    tool_name: str
    arguments: str
    """The arguments as the model wrote them (JSON)."""
    conversation_id: str
    prompt_id: UUID
    timeout: float | None
    """Seconds the engine waits before the call counts as denied (``None``: no limit)."""


class ToolApprovalDecidedEvent(Event):
    """A waiting tool call was approved, denied, or timed out."""

    call_id: str
    tool_name: str
    conversation_id: str
    prompt_id: UUID
    approved: bool
    reason: str | None = None
    decided_by: Literal["command", "timeout"]


class ApproveToolCallCommand(Command):
    """Approve (``approve=True``) or deny a tool call that waits for approval."""

    call_id: str
    approve: bool = True
    reason: str | None = None
    """Why: shown to the model with a denial."""


@dataclass
class PendingApproval:
    """A tool call waiting for a decision."""

    call_id: str
    tool_name: str
    arguments: str
    conversation_id: str
    prompt_id: UUID
    decision: asyncio.Future[tuple[bool, str | None]] = field(repr=False)


class ToolApprovals:
    """The tool calls of one engine that wait for a person, and the command that decides them.

    Registers the one handler of :class:`ApproveToolCallCommand` on ``bus``.

    Args:
        bus: The engine's bus.
        timeout: Seconds a call waits for a decision before it counts as denied;
            ``None`` waits as long as it takes. Set it later as ``engine.approvals.timeout``.
    """

    def __init__(self, bus: MessageBus, timeout: float | None = DEFAULT_APPROVAL_TIMEOUT) -> None:
        self.bus = bus
        self.timeout = timeout
        self._pending: dict[str, PendingApproval] = {}
        # The engine that owns this replaces an earlier engine's approvals (it says so).
        bus.register_command_handler(ApproveToolCallCommand, self.handle_approve, replace=True)

    def __repr__(self) -> str:
        return f"<ToolApprovals pending={list(self._pending)} timeout={self.timeout}s>"

    @property
    def pending(self) -> list[PendingApproval]:
        """The calls waiting now, oldest first."""
        return list(self._pending.values())

    async def handle_approve(self, command: ApproveToolCallCommand) -> str:
        """Decide a waiting call; the result says what was decided.

        Raises:
            ToolError: No call with that id is waiting (already decided, timed out, or unknown).
        """
        waiting = self._pending.pop(command.call_id, None)
        if waiting is None:
            ids = ", ".join(self._pending) or "none"
            raise ToolError(
                f"no tool call {command.call_id!r} is waiting for approval; waiting now: {ids}"
            )
        decision = (command.approve, command.reason)
        loop = waiting.decision.get_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - handlers always run on a loop
            running = None
        if running is loop:
            if not waiting.decision.done():
                waiting.decision.set_result(decision)
        else:
            loop.call_soon_threadsafe(_settle, waiting.decision, decision)
        verb = "approved" if command.approve else "denied"
        return f"{verb} {waiting.tool_name} ({command.call_id})"

    async def check(self, call: ToolCall, conversation_id: str, prompt_id: UUID) -> None:
        """Wait for a decision on ``call``; return if approved.

        Raises:
            ToolError: Denied, or no decision within ``timeout``; the message goes to the model.
        """
        decision: asyncio.Future[tuple[bool, str | None]] = (
            asyncio.get_running_loop().create_future()
        )
        waiting = PendingApproval(
            call.id, call.name, call.arguments, conversation_id, prompt_id, decision
        )
        self._pending[call.id] = waiting
        ids = {"call_id": call.id, "tool_name": call.name, "conversation_id": conversation_id}
        try:
            await self.bus.publish(
                ToolApprovalRequestedEvent(
                    **ids, arguments=call.arguments, prompt_id=prompt_id, timeout=self.timeout
                )
            )
            try:
                approved, reason = await asyncio.wait_for(decision, self.timeout)
                decided_by: Literal["command", "timeout"] = "command"
            except TimeoutError:
                approved, reason, decided_by = False, None, "timeout"
        finally:
            self._pending.pop(call.id, None)
        await self.bus.publish(
            ToolApprovalDecidedEvent(
                **ids,
                prompt_id=prompt_id,
                approved=approved,
                reason=reason,
                decided_by=decided_by,
            )
        )
        if approved:
            return
        if decided_by == "timeout":
            raise ToolError(
                f"{call.name} was not run: nobody approved the call within {self.timeout} s"
            )
        because = f": {reason}" if reason else ""
        raise ToolError(f"{call.name} was not run: the user denied the call{because}")


def _settle(
    future: asyncio.Future[tuple[bool, str | None]], decision: tuple[bool, str | None]
) -> None:
    if not future.done():
        future.set_result(decision)
