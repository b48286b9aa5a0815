"""The chat panel's tool calls waiting for approval: one row each, with Approve and Deny."""

from __future__ import annotations

import asyncio
import html
import json
from typing import Any, Protocol
from uuid import UUID

import ipywidgets as widgets

from llmgine.bus.bus import MessageBus
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
        self.waiting: list[str] = []
        """Call ids waiting for a decision, oldest first."""

    def subscriptions(self) -> list[tuple[type, Any]]:
        """The bus events the rows follow, with their handlers."""
        return [
            (ToolApprovalRequestedEvent, self.on_requested),
            (ToolApprovalDecidedEvent, self.on_decided),
        ]

    def decide(
        self, call_id: str | None, approve: bool, reason: str | None = None
    ) -> asyncio.Future[CommandResult]:
        """Approve or deny ``call_id`` (default: the oldest waiting call); returns the task.

        Raises:
            LookupError: No call of this panel is waiting.
        """
        if call_id is None:
            if not self.waiting:
                raise LookupError("no tool call of this chat panel is waiting for approval")
            call_id = self.waiting[0]
        command = ApproveToolCallCommand(call_id=call_id, approve=approve, reason=reason)
        return spawn(self.panel.bus.execute(command), loop=self.panel.bus.loop)

    def on_requested(self, event: ToolApprovalRequestedEvent) -> None:
        """Show the waiting call with its Approve and Deny buttons."""
        if event.prompt_id != self.panel._prompt_id:
            return
        summary = call_summary(event.tool_name, event.arguments)
        label = widgets.HTML(f"⏸ <code>{html.escape(summary)}</code> waits for your approval")
        approve = widgets.Button(description="Approve", button_style="success")
        deny = widgets.Button(description="Deny", button_style="danger")
        approve.on_click(lambda _: self.decide(event.call_id, True))
        deny.on_click(lambda _: self.decide(event.call_id, False))
        row = widgets.HBox([label, approve, deny])
        row.add_class("llmgine-approval")
        self.rows[event.call_id] = (summary, label, row)
        self.waiting.append(event.call_id)
        self.panel._show_step(row)

    def abandon(self) -> None:
        """The reply ended (stopped) with calls still waiting: their buttons go away."""
        for call_id in self.waiting:
            summary, label, row = self.rows[call_id]
            label.value = f"<code>{html.escape(summary)}</code> not run: the reply was stopped"
            row.children = (label,)
        self.waiting.clear()

    def on_decided(self, event: ToolApprovalDecidedEvent) -> None:
        """Replace the buttons by the decision."""
        found = self.rows.get(event.call_id)
        if found is None:
            return
        if event.call_id in self.waiting:
            self.waiting.remove(event.call_id)
        summary, label, row = found
        if event.decided_by == "timeout":
            verdict = "not approved in time"
        else:
            verdict = "approved" if event.approved else "denied"
            if event.reason:
                verdict += f": {event.reason}"
        label.value = f"<code>{html.escape(summary)}</code> {html.escape(verdict)}"
        row.children = (label,)
