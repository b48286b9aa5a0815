"""Tool approval: a person approves or denies a tool call before it runs (human in the loop).

A tool registered with ``requires_approval=True`` pauses its prompt: the engine
publishes a :class:`ToolApprovalRequestedEvent` and waits for an
:class:`ApproveToolCallCommand` (the chat panel's Approve / Deny buttons,
``%llmgine approve ID``, or any code on the bus). A denial or a timeout becomes the
tool's error, sent back to the model; every decision is logged as a
:class:`ToolApprovalDecidedEvent`. A prompt that ends before a decision (stopped, timed
out, its bus stopped) withdraws its call with a ``ToolApprovalDecidedEvent`` too
(``decided_by="cancelled"``), so no process keeps showing it as waiting.

Each request has an ``approval_id`` (a UUID) that no other request anywhere shares;
``ApproveToolCallCommand(approval_id=...)`` decides exactly that call. The model's
``call_id`` alone is not unique (every conversation's first call of the offline
model is ``call_1_0``): ``ApproveToolCallCommand(call_id=...)`` decides the one call
waiting with that id (narrowed by ``conversation_id=...`` if given) and is refused,
listing the waiting calls, when several match. Every key a command gives must match
the call (``approval_id`` with a ``call_id`` or ``conversation_id`` of another call is
refused). Nothing is ever guessed.

On a shared bus (Redis) the command reaches whichever process handles it first,
while the call waits in the process whose engine runs the prompt. A process that
does not hold the call relays the decision as a :class:`ToolApprovalRelayedEvent`,
which every engine process handles; the holder applies it and publishes the
:class:`ToolApprovalDecidedEvent` the relaying process waits for (at most
``relay_timeout`` seconds), so the command's result says whether it was applied.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID, uuid4

from pydantic import Field, model_validator

from llmgine.messages.commands import Command
from llmgine.messages.events import Event

__all__ = [
    "ApproveToolCallCommand",
    "ToolApprovalDecidedEvent",
    "ToolApprovalEvent",
    "ToolApprovalRelayedEvent",
    "ToolApprovalRequestedEvent",
    "describe_request",
]


def _new_id() -> str:
    return str(uuid4())


class ToolApprovalEvent(Event):
    """Base of the approval events; an engine follows them all with one handler."""


class ToolApprovalRequestedEvent(ToolApprovalEvent):
    """A tool call waits for a person: answer with ``ApproveToolCallCommand(approval_id=...)``."""

    call_id: str
    """The id the model gave the call; not unique across conversations."""
    tool_name: str
    arguments: str
    """The arguments as the model wrote them (JSON)."""
    conversation_id: str
    prompt_id: UUID
    timeout: float | None
    """Seconds the engine waits before the call counts as denied (``None``: no limit)."""
    approval_id: str = Field(default_factory=_new_id)
    """The key of this request, unique across conversations and processes."""


class ToolApprovalDecidedEvent(ToolApprovalEvent):
    """A waiting tool call was approved, denied, timed out, or withdrawn with its prompt.

    ``decided_by`` is ``"command"`` (an ``ApproveToolCallCommand``), ``"timeout"`` (no
    decision within the approval timeout) or ``"cancelled"`` (the prompt ended first:
    stopped, timed out, or its bus stopped; the call did not run).
    """

    call_id: str
    tool_name: str
    conversation_id: str
    prompt_id: UUID
    approved: bool
    reason: str | None = None
    decided_by: Literal["command", "timeout", "cancelled"]
    approval_id: str | None = None
    """The request's ``approval_id``."""
    command_id: UUID | None = None
    """The id of the ``ApproveToolCallCommand`` that decided it (``None``: no command)."""


class ToolApprovalRelayedEvent(ToolApprovalEvent):
    """A decision sent to every engine process; the one where the call waits applies it."""

    approval_id: str
    approve: bool
    reason: str | None = None
    command_id: UUID
    """The ``ApproveToolCallCommand`` being relayed."""
    call_id: str | None = None
    """The command's ``call_id``, if it gave one: applied only if the call has it."""
    conversation_id: str | None = None
    """The command's ``conversation_id``, if it gave one: applied only if the call has it."""


class ApproveToolCallCommand(Command):
    """Approve (``approve=True``) or deny a tool call that waits for approval.

    Name the call by ``approval_id`` (from its ``ToolApprovalRequestedEvent``), or by
    ``call_id`` (narrowed by ``conversation_id``) when that matches one waiting call.
    """

    call_id: str | None = None
    approve: bool = True
    reason: str | None = None
    """Why: shown to the model with a denial."""
    approval_id: str | None = None
    """The request's unique key; preferred over ``call_id``."""
    conversation_id: str | None = None
    """With ``call_id``: only calls of this conversation."""

    @model_validator(mode="after")
    def _names_a_call(self) -> ApproveToolCallCommand:
        if not self.call_id and not self.approval_id:
            raise ValueError(
                "name the tool call: approval_id=... (from its ToolApprovalRequestedEvent) "
                "or call_id=..."
            )
        return self


def describe_request(request: ToolApprovalRequestedEvent) -> str:
    """One line naming a waiting call: call id, tool, arguments, conversation, approval id."""
    arguments = request.arguments if len(request.arguments) <= 80 else request.arguments[:77] + "…"
    return (
        f"{request.call_id} ({request.tool_name} {arguments} in conversation "
        f"{request.conversation_id!r}, approval_id {request.approval_id})"
    )


def __getattr__(name: str) -> object:
    """``ToolApprovals`` and ``PendingApproval`` moved to :mod:`llmgine.llm.tool_approvals`."""
    if name in ("ToolApprovals", "PendingApproval"):
        from llmgine.llm import tool_approvals

        return getattr(tool_approvals, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
