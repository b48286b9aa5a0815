"""The chat panel's tool calls waiting for approval: one row each, with Approve and Deny."""

from __future__ import annotations

import asyncio
import html
import json
from typing import Any, Protocol
from uuid import UUID

import ipywidgets as widgets

from llmgine.bus.bus import MessageBus
from llmgine.errors import ApprovalNotFoundError
from llmgine.llm.approval import (
    ApproveToolCallCommand,
    ToolApprovalDecidedEvent,
    ToolApprovalRequestedEvent,
)
from llmgine.messages.commands import CommandResult
from llmgine.notebook.sync import spawn

__all__ = ["ApprovalRows", "call_summary"]


def call_summary(tool_name: str, arguments: str) -> str:
    """``tool · name(a=1, b='x')`` from the JSON arguments a model wrote."""
    try:
        shown = ", ".join(f"{k}={v!r}" for k, v in json.loads(arguments).items())
    except (ValueError, AttributeError):
        shown = arguments
    return f"tool · {tool_name}({shown})"


class _Panel(Protocol):
    bus: MessageBus
    _prompt_id: UUID | None

    def _show_step(self, step: widgets.Widget) -> None: ...


class ApprovalRows:
    """Rows of a chat panel for tool calls that wait for a person.

    Args:
        panel: The chat panel (its bus, transcript and current prompt).
    """

    def __init__(self, panel: _Panel) -> None:
        self.panel = panel
        self.rows: dict[str, tuple[str, widgets.HTML, widgets.HBox]] = {}
        """Rows by the approval id of their request."""
        self._calls: dict[str, str] = {}  # approval id: call id
        self._waiting: list[str] = []  # approval ids waiting for a decision, oldest first

    @property
    def waiting(self) -> list[str]:
        """Call ids waiting for a decision, oldest first."""
        return [self._calls[a] for a in self._waiting]

    @property
    def waiting_approvals(self) -> list[str]:
        """Approval ids (the unique keys) waiting for a decision, oldest first."""
        return list(self._waiting)

    def subscriptions(self) -> list[tuple[type, Any]]:
        """The bus events the rows follow, with their handlers."""
        return [
            (ToolApprovalRequestedEvent, self.on_requested),
            (ToolApprovalDecidedEvent, self.on_decided),
        ]

    def decide(
        self, call_id: str | None, approve: bool, reason: str | None = None
    ) -> asyncio.Future[CommandResult]:
        """Approve or deny a call of this panel; returns the task.

        Args:
            call_id: The call's approval id or call id (default: the oldest waiting call).
            approve: Approve, or deny.
            reason: Why (for a denial).

        Raises:
            ApprovalNotFoundError: No call of this panel is waiting (under that id);
                also a ``LookupError``.
        """
        if call_id is None:
            if not self._waiting:
                raise ApprovalNotFoundError(
                    "no tool call of this chat panel is waiting for approval"
                )
            approval_id = self._waiting[0]
        elif call_id in self._calls:
            approval_id = call_id
        else:
            # A call id names the panel's own call, never another conversation's.
            found = [a for a in self._waiting if self._calls[a] == call_id]
            if not found:
                waiting = ", ".join(self.waiting) or "none"
                raise ApprovalNotFoundError(
                    f"no tool call {call_id!r} of this chat panel is waiting for approval; "
                    f"waiting now: {waiting}"
                )
            approval_id = found[0]
        command = ApproveToolCallCommand(
            approval_id=approval_id,
            call_id=self._calls[approval_id],
            approve=approve,
            reason=reason,
        )
        return spawn(self.panel.bus.execute(command), loop=self.panel.bus.loop)

    def on_requested(self, event: ToolApprovalRequestedEvent) -> None:
        """Show the waiting call with its Approve and Deny buttons."""
        if event.prompt_id != self.panel._prompt_id:
            return
        key = event.approval_id
        summary = call_summary(event.tool_name, event.arguments)
        label = widgets.HTML(f"⏸ <code>{html.escape(summary)}</code> waits for your approval")
        approve = widgets.Button(description="Approve", button_style="success")
        deny = widgets.Button(description="Deny", button_style="danger")
        approve.on_click(lambda _: self.decide(key, True))
        deny.on_click(lambda _: self.decide(key, False))
        row = widgets.HBox([label, approve, deny])
        row.add_class("llmgine-approval")
        self.rows[key] = (summary, label, row)
        self._calls[key] = event.call_id
        self._waiting.append(key)
        self.panel._show_step(row)

    def abandon(self) -> None:
        """The reply ended (stopped) with calls still waiting: their buttons go away."""
        for approval_id in self._waiting:
            summary, label, row = self.rows[approval_id]
            label.value = f"<code>{html.escape(summary)}</code> not run: the reply was stopped"
            row.children = (label,)
        self._waiting.clear()

    def on_decided(self, event: ToolApprovalDecidedEvent) -> None:
        """Replace the buttons by the decision."""
        found = self.rows.get(event.approval_id or "")
        if found is None:
            return
        if event.approval_id in self._waiting:
            self._waiting.remove(event.approval_id)
        summary, label, row = found
        if event.decided_by == "timeout":
            verdict = "not approved in time"
        elif event.decided_by == "cancelled":
            verdict = "not run: the reply was stopped"
        else:
            verdict = "approved" if event.approved else "denied"
            if event.reason:
                verdict += f": {event.reason}"
        label.value = f"<code>{html.escape(summary)}</code> {html.escape(verdict)}"
        row.children = (label,)
