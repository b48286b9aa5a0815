"""ChatWidget: a chat panel on an LLMEngine, streaming from the engine's bus events."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import uuid
from typing import Any
from uuid import UUID

import ipywidgets as widgets
from pydantic import ValidationError

from llmgine._validation import describe_validation_error
from llmgine.errors import ConfigurationError
from llmgine.llm.commands import ClearConversationCommand, PromptCommand
from llmgine.llm.engine import LLMEngine
from llmgine.llm.events import LLMDeltaEvent, LLMResponseEvent, ToolCallEvent, ToolResultEvent
from llmgine.messages.commands import CommandResult
from llmgine.notebook.sync import cancel, spawn
from llmgine.notebook.widgets._render import MarkdownStream, details, markdown
from llmgine.notebook.widgets.approvals import ApprovalRows
from llmgine.notebook.widgets.conversation_picker import ConversationPicker
from llmgine.notebook.widgets.reply_cost import ReplyCost

__all__ = ["ChatWidget"]

_USER_STYLE = "background:#eef3fb;border-radius:6px;padding:4px 8px;margin:2px 0"
_REPLY_STYLE = "padding:4px 8px;margin:2px 0"


class ChatWidget(widgets.VBox):
    """A chat panel: a conversation picker, transcript, input, Send, Stop and Clear.

    Replies stream in as the engine publishes ``LLMDeltaEvent``s, rendered as
    Markdown (HTML in messages is escaped). Each tool call shows as a collapsible
    step with its arguments and result; under each reply, what its LLM calls cost
    (and "cached" when the call cache answered). The prompt runs as a task on the kernel's
    loop, so the kernel stays free while the model answers. The picker lists the
    engine's stored conversations: choosing one shows it and continues it. Every
    button has a method: :meth:`send`, :meth:`stop`, :meth:`clear`, :meth:`pick`,
    :meth:`new_conversation`.

    Each prompt uses the engine's defaults (``timeout``, ``options``) unless the
    panel is given its own request options.

    Args:
        engine: The engine to chat with (its bus carries the events).
        conversation_id: The engine conversation this panel continues.
        temperature: Sampling temperature of every prompt from this panel.
        max_tokens: The longest answer, in tokens.
        tool_choice: ``"auto"``, ``"none"``, ``"required"`` or a tool's name.
        timeout: Seconds a prompt may take (default: the engine's).
        options: Request parameters passed to the provider (``seed``, ``stop``, ...).

    Raises:
        ConfigurationError: An option a prompt refuses (``max_tokens=0``, a negative
            or NaN ``temperature``), named in the message (also a ``ValueError``).
    """

    def __init__(
        self,
        engine: LLMEngine,
        *,
        conversation_id: str = "default",
        temperature: float | None = None,
        max_tokens: int | None = None,
        tool_choice: str | None = None,
        timeout: float | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.engine = engine
        self.bus = engine.bus
        self.conversation_id = conversation_id
        self.prompt_options: dict[str, Any] = {
            name: value
            for name, value in {
                "temperature": temperature,
                "max_tokens": max_tokens,
                "tool_choice": tool_choice,
                "timeout": timeout,
                "options": options,
            }.items()
            if value is not None
        }
        """The ``PromptCommand`` fields every prompt of this panel sets."""
        try:  # refused here, not on each send after the message is typed
            PromptCommand(prompt="-", conversation_id=conversation_id, **self.prompt_options)
        except ValidationError as exc:
            raise ConfigurationError(f"ChatWidget: {describe_validation_error(exc)}") from None
        self.history: list[tuple[str, str]] = []
        """Every message shown, as ``(role, text)``; roles: user, assistant, error, stopped."""
        self.costs: list[ReplyCost] = []
        """What each reply cost, in order: its LLM calls, dollars, tokens, cache hits."""
        self.transcript = widgets.VBox()
        self.status = widgets.HTML()
        self.input = widgets.Textarea(placeholder="Ask something…", rows=2)
        self.input.layout.width = "100%"
        self.send_button = widgets.Button(description="Send", button_style="primary")
        self.stop_button = widgets.Button(description="Stop", disabled=True)
        self.clear_button = widgets.Button(description="Clear")
        self.send_button.on_click(lambda _: self.send())
        self.stop_button.on_click(lambda _: self.stop())
        self.clear_button.on_click(lambda _: self.clear())
        buttons = widgets.HBox([self.send_button, self.stop_button, self.clear_button])
        self.picker = ConversationPicker(conversation_id, self.pick, self.new_conversation)
        """The conversations to continue (the engine's stored ones) and New."""
        super().__init__([self.picker, self.transcript, self.status, self.input, buttons])
        self.add_class("llmgine-chat")
        self._task: asyncio.Future[None] | None = None
        self._generating = False  # the reply's own state; its task still lists conversations
        self._picks = 0  # picks so far: a conversation read for an older one is not shown
        self._loading: asyncio.Future[None] | None = None  # the picked conversation's read
        self._started: UUID | None = None  # the prompt whose ``_run`` began last
        self._prompt_id: UUID | None = None
        self._streamed = ""
        self._reply: widgets.HTML | None = None
        self._rendered = MarkdownStream()
        self._frozen: list[widgets.HTML] = []  # finished blocks of the reply being streamed
        self._steps: dict[str, tuple[str, widgets.HTML]] = {}  # call id: (summary, step)
        self._cost = ReplyCost()  # the LLM calls of the reply being written
        self.approvals = ApprovalRows(self)
        """Tool calls waiting for approval, with Approve / Deny buttons in the transcript."""
        self._subscriptions = self._subscribe()
        self.listing: asyncio.Future[None] | None = self.refresh_conversations()
        """The latest reading of the stored conversations into the picker."""

    def __repr__(self) -> str:
        return f"ChatWidget(conversation={self.conversation_id!r})"

    @property
    def generating(self) -> bool:
        """Whether a reply is being generated (Send is disabled exactly while it is)."""
        return self._generating

    # ---------------------------------------------------------------- actions

    def send(self, text: str | None = None) -> asyncio.Future[None] | None:
        """Send ``text`` (default: the input box); returns the task of the reply.

        Nothing happens while a reply is being generated or for an empty message.
        """
        prompt = self.input.value if text is None else text
        if self.generating or not prompt.strip():
            return None
        command = PromptCommand(  # first: options it refuses leave the panel as it was
            prompt=prompt, conversation_id=self.conversation_id, stream=True, **self.prompt_options
        )
        self.input.value = ""
        self._add("user", prompt, f"<div style='{_USER_STYLE}'>{markdown(prompt)}</div>")
        self._reply = widgets.HTML(f"<div style='{_REPLY_STYLE}'><i>…</i></div>")
        self.transcript.children = (*self.transcript.children, self._reply)
        self._prompt_id = command.id
        self._streamed = ""
        self._rendered = MarkdownStream()
        self._steps = {}
        self._cost = ReplyCost()
        self._set_generating(True)
        loading = self._loading if self._loading is not None and not self._loading.done() else None
        self._task = spawn(self._run(command, loading), loop=self.bus.loop)
        self._task.add_done_callback(lambda task: self._cancelled_unstarted(task, command.id))
        return self._task

    def approve(self, call_id: str | None = None) -> asyncio.Future[CommandResult]:
        """Approve a waiting tool call of this panel; the Approve button's method.

        ``call_id`` is the call's approval id or call id (default: the oldest waiting call).
        """
        return self.approvals.decide(call_id, True)

    def deny(
        self, call_id: str | None = None, reason: str | None = None
    ) -> asyncio.Future[CommandResult]:
        """Deny a waiting tool call of this panel; the Deny button's method.

        ``call_id`` is the call's approval id or call id (default: the oldest waiting call).
        """
        return self.approvals.decide(call_id, False, reason)

    def stop(self) -> None:
        """Stop the reply being generated (cancels its task); the text so far stays."""
        if self.generating and self._task is not None:
            cancel(self._task)

    def clear(self) -> asyncio.Future[CommandResult]:
        """Empty the transcript and the engine's conversation; returns the clearing task."""
        self._abandon()
        self.transcript.children = ()
        self.history.clear()
        self.costs.clear()
        self.status.value = ""
        return spawn(
            self.bus.execute(ClearConversationCommand(conversation_id=self.conversation_id))
        )

    def pick(self, conversation_id: str) -> asyncio.Future[None]:
        """Continue conversation ``conversation_id``: its stored messages replace the transcript.

        The picker's method; returns the task that reads the conversation.
        """
        self._abandon()
        self.conversation_id = conversation_id
        self.transcript.children = ()
        self.history.clear()
        self.costs.clear()
        self.status.value = ""
        self.listing = spawn(  # ``_abandon`` numbered this pick
            self._show_conversation(conversation_id, self._picks), loop=self.bus.loop
        )
        self._loading = self.listing
        return self.listing

    def new_conversation(self, conversation_id: str | None = None) -> asyncio.Future[None]:
        """Start a new conversation (``chat-`` and 8 hex digits unless named); New's method."""
        return self.pick(conversation_id or f"chat-{uuid.uuid4().hex[:8]}")

    def refresh_conversations(self) -> asyncio.Future[None]:
        """Read the engine's stored conversations into the picker (off the event loop)."""
        return spawn(self._list_conversations(), loop=self.bus.loop)

    async def _list_conversations(self) -> None:
        listed = await self.engine.conversations.alist()
        self.picker.show([str(i) for i in listed["id"]], self.conversation_id)

    async def _show_conversation(self, conversation_id: str, pick: int) -> None:
        conversation = await self.engine.conversations.aget(conversation_id)
        if pick != self._picks:
            return  # another pick came meanwhile (even of this same conversation)
        shown, rows = [], []
        for message in conversation.messages:
            if message.role in ("user", "assistant") and message.content:
                style = _USER_STYLE if message.role == "user" else _REPLY_STYLE
                body = f"<div style='{style}'>{markdown(message.content)}</div>"
                shown.append((message.role, message.content))
                rows.append(widgets.HTML(body))
        # Above what was sent since the pick: the stored turns came first.
        self.history[:0] = shown
        self.transcript.children = (*rows, *self.transcript.children)
        await self._list_conversations()

    def rebind(self, engine: LLMEngine) -> None:
        """Chat with ``engine`` from now on (its bus carries the events); the transcript stays."""
        self.stop()
        self._picks += 1  # a conversation still being read from the old engine is not shown
        for event_type, handler in self._subscriptions:
            self.bus.unregister_event_handler(event_type, handler)
        self.engine = engine
        self.bus = engine.bus
        self._subscriptions = self._subscribe()
        self.listing = self.refresh_conversations()

    def close(self) -> None:
        """Unsubscribe from the bus and close the widget."""
        if not hasattr(self, "_subscriptions"):  # its constructor refused an option
            super().close()
            return
        self.stop()
        if self.listing is not None and not self.listing.done():
            cancel(self.listing)
        for event_type, handler in self._subscriptions:
            self.bus.unregister_event_handler(event_type, handler)
        self._subscriptions = []
        super().close()

    # --------------------------------------------------------------- plumbing

    async def _run(self, command: PromptCommand, loading: asyncio.Future[None] | None) -> None:
        self._started = command.id
        try:
            if loading is not None:  # a prompt sent as its conversation loads follows it
                with contextlib.suppress(Exception):
                    await asyncio.shield(loading)
            result = await self.bus.execute(command)
        except asyncio.CancelledError:
            self._end(command.id, "stopped", self._streamed + "\n\n*[stopped]*")
            return
        except Exception as exc:  # the bus refused the command (no handler for prompts)
            self._end(command.id, "error", f"{type(exc).__name__}: {exc}")
            return
        # The answer is in (and kept): too late to stop it, so it is shown whole.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self.bus.wait_for_events())  # the last deltas and tool steps
        if result.success:
            self._end(command.id, "assistant", str(result.result))
        else:
            self._end(command.id, "error", f"{result.error_type}: {result.error}")
        await self._list_conversations()  # a new conversation is listed once it has a turn

    def _cancelled_unstarted(self, task: asyncio.Future[None], prompt_id: UUID) -> None:
        # Stopped before ``_run`` began, its ``except`` never runs: do its part. (A task
        # run from a subshell is a wrapper, cancelled at once: its ``_run`` ends the reply.)
        if task.cancelled() and self._started != prompt_id:
            self._end(prompt_id, "stopped", self._streamed + "\n\n*[stopped]*")

    def _end(self, prompt_id: UUID, role: str, text: str) -> None:
        """End reply ``prompt_id`` if it is still this panel's (Clear or a pick drop it)."""
        if self._prompt_id != prompt_id:
            return
        self._set_generating(False)
        self._finish(role, text)

    def _abandon(self) -> None:
        """Stop the reply being written and forget it: its task ends without showing it."""
        self.stop()
        if self._prompt_id is not None:
            self._prompt_id = None
            self.approvals.abandon()
            self._set_generating(False)
        self._picks += 1  # nor does a conversation still being read for an earlier pick

    def _finish(self, role: str, text: str) -> None:
        self._prompt_id = None
        self.approvals.abandon()  # a stopped reply leaves no live Approve buttons behind
        if role == "error":
            body = f"<div style='color:#b00020;{_REPLY_STYLE}'>⚠ {html.escape(text)}</div>"
        else:
            body = f"<div style='{_REPLY_STYLE}'>{markdown(text)}</div>"
        body += self._cost.html()
        self.costs.append(self._cost)
        if self._frozen:  # the reply is shown whole again, in one block
            self.transcript.children = tuple(
                c for c in self.transcript.children if c not in self._frozen
            )
            self._frozen = []
        if self._reply is not None:
            self._reply.value = body
        self.history.append((role, text))
        self._reply = None

    def _add(self, role: str, text: str, body: str) -> None:
        self.history.append((role, text))
        self.transcript.children = (*self.transcript.children, widgets.HTML(body))

    def _show_step(self, step: widgets.Widget) -> None:
        """Add a tool step (or an approval row) above the reply being written."""
        children = list(self.transcript.children)
        index = children.index(self._reply) if self._reply in children else len(children)
        children.insert(index, step)
        self.transcript.children = tuple(children)

    def _set_generating(self, on: bool) -> None:
        self._generating = on
        self.input.disabled = on
        self.send_button.disabled = on
        self.stop_button.disabled = not on
        self.status.value = "<i>generating…</i>" if on else ""

    def _subscribe(self) -> list[tuple[type, Any]]:
        # Closures, not methods: two panels on one bus must not replace each other's handlers.
        def on_delta(event: LLMDeltaEvent) -> None:
            if event.prompt_id == self._prompt_id and self._reply is not None:
                self._streamed += event.delta
                frozen, tail = self._rendered.feed(event.delta)  # linear, not quadratic
                for html_ in frozen:
                    block = widgets.HTML(f"<div style='{_REPLY_STYLE}'>{html_}</div>")
                    self._frozen.append(block)
                    self._show_step(block)
                self._reply.value = f"<div style='{_REPLY_STYLE}'>{tail}</div>"

        def on_tool_call(event: ToolCallEvent) -> None:
            if event.prompt_id != self._prompt_id:
                return
            try:
                arguments = ", ".join(f"{k}={v!r}" for k, v in json.loads(event.arguments).items())
            except (ValueError, AttributeError):
                arguments = event.arguments
            summary = f"tool · {event.tool_name}({arguments})"
            step = widgets.HTML(details(summary, "running…"))
            self._steps[event.call_id] = (summary, step)
            self._show_step(step)

        def on_tool_result(event: ToolResultEvent) -> None:
            found = self._steps.get(event.call_id)
            if event.prompt_id != self._prompt_id or found is None:
                return
            summary, step = found
            body = f"error: {event.error}" if event.error else json.dumps(event.result, default=str)
            step.value = details(summary, body)

        def on_response(event: LLMResponseEvent) -> None:
            if event.prompt_id == self._prompt_id:
                self._cost.add(event)

        subscriptions: list[tuple[type, Any]] = [
            (LLMDeltaEvent, on_delta),
            (LLMResponseEvent, on_response),
            (ToolCallEvent, on_tool_call),
            (ToolResultEvent, on_tool_result),
            *self.approvals.subscriptions(),
        ]
        for event_type, handler in subscriptions:
            self.bus.register_event_handler(event_type, handler)
        return subscriptions
