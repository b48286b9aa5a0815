"""The wait of a tool call for a person: its time limit, and how it ends without a decision.

:class:`ApprovalWait` is the waiting half of
:class:`~llmgine.llm.tool_approvals.ToolApprovals` (which decides the calls). A wait ends
with a decision, at ``timeout`` (the call counts as denied), when its prompt ends first
(stopped, or its own timeout: see :func:`within_prompt_timeout`), or at ``bus.stop()``
(:meth:`ApprovalWait.withdraw_all`); each end publishes one ``ToolApprovalDecidedEvent``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal, TypeVar
from uuid import UUID

from llmgine.bus.bus import MessageBus
from llmgine.errors import (
    ApprovalTimeoutError,
    ApprovalWithdrawnError,
    ConfigurationError,
    ProviderTimeoutError,
    ToolError,
)
from llmgine.llm.approval import ToolApprovalDecidedEvent, ToolApprovalRequestedEvent
from llmgine.llm.pending_approval import ENDED_FIRST, Decision, PendingApproval, settle
from llmgine.llm.types import ToolCall

__all__ = ["BUS_STOPPED", "ApprovalWait", "checked_timeout", "within_prompt_timeout"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_REMEMBERED = 1000  # decided approvals kept, to say "already decided" instead of "unknown"

BUS_STOPPED = "the bus stopped before a decision; the call did not run"
"""The reason of a call withdrawn by ``bus.stop()`` (``decided_by="cancelled"``)."""

_cut_short: ContextVar[list[PendingApproval] | None] = ContextVar(
    "llmgine_approvals_cut_short", default=None
)
"""The waits of the current prompt that its end cut short (see within_prompt_timeout)."""


def checked_timeout(value: object, name: str = "engine.approvals.timeout") -> float | None:
    """``value`` as an approval timeout: a positive finite number of seconds, or ``None``.

    Args:
        value: The timeout given.
        name: What it was given as, for the error.

    Raises:
        ConfigurationError: Anything else (zero, a negative number, NaN, infinity, text).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"{name} must be a number of seconds or None (wait as long as it takes); got {value!r}."
        )
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(
            f"{name} must be a positive, finite number of seconds, or None to wait as long "
            f"as it takes; got {value!r}."
        )
    return float(value)


async def within_prompt_timeout(result: Awaitable[T], timeout: float | None) -> T:
    """Await a prompt's ``result``; when its timeout ran out in an approval wait, say so.

    Args:
        result: The prompt's run (``PromptRun.result()``).
        timeout: The prompt's timeout in seconds, for the message.

    Raises:
        ApprovalTimeoutError: The prompt's ``timeout`` ended it while a tool call waited
            for a person (instead of the ``ProviderTimeoutError`` of a slow model).
    """
    cut: list[PendingApproval] = []
    token = _cut_short.set(cut)
    try:
        return await result
    except ProviderTimeoutError:
        if not cut:
            raise
        calls = ", ".join(
            f"{w.tool_name} (call {w.call_id!r}, approval_id {w.approval_id})" for w in cut
        )
        limit = f" of {timeout:g} s" if timeout is not None else ""
        raise ApprovalTimeoutError(
            f"The prompt's timeout{limit} ran out while {calls} waited for a "
            "person's approval; the call did not run and the conversation is unchanged. "
            "Decide sooner with ApproveToolCallCommand (engine.approvals.pending lists the "
            "waiting calls), set engine.approvals.timeout below the prompt's timeout so an "
            "unanswered call goes back to the model as denied, or allow more with "
            "timeout=... on the prompt or on the LLMEngine."
        ) from None
    finally:
        _cut_short.reset(token)


class ApprovalWait:
    """The waiting half of ``ToolApprovals``: :meth:`check`, its ``timeout``, and stop."""

    bus: MessageBus
    _timeout: float | None
    _pending: dict[str, PendingApproval]
    _known: dict[str, ToolApprovalRequestedEvent]
    _decided: OrderedDict[str, ToolApprovalDecidedEvent]
    _publishing: set[asyncio.Future[None]]

    @property
    def timeout(self) -> float | None:
        """Seconds a call waits for a decision before it counts as denied; ``None``: no limit.

        Raises:
            ConfigurationError: Set to anything but a positive finite number or ``None``.
        """
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._timeout = checked_timeout(value)

    def _remember(self, decided: ToolApprovalDecidedEvent) -> None:
        """Note a decision at once: the call no longer waits, here or in any lookup."""
        if decided.approval_id is None:
            return
        self._known.pop(decided.approval_id, None)
        self._decided[decided.approval_id] = decided
        self._decided.move_to_end(decided.approval_id)
        while len(self._decided) > _REMEMBERED:
            self._decided.popitem(last=False)

    async def withdraw_all(self) -> None:
        """End every wait of this process without running its call (``bus.stop()``).

        Each call is decided ``"cancelled"`` with the reason :data:`BUS_STOPPED` and its
        prompt fails with :class:`ApprovalWithdrawnError`; returns once every wait ended.
        """
        withdrawn = list(self._pending.values())
        self._pending.clear()
        for waiting in withdrawn:
            settle(waiting.decision, Decision(False, BUS_STOPPED, None, withdrawn=True))
        for waiting in withdrawn:
            await waiting.ended.wait()

    @contextmanager
    def _waiting(
        self, waiting: PendingApproval, request: ToolApprovalRequestedEvent
    ) -> Iterator[None]:
        self._pending[waiting.approval_id] = waiting
        self._known[waiting.approval_id] = request
        try:
            yield
        finally:
            self._pending.pop(waiting.approval_id, None)
            self._known.pop(waiting.approval_id, None)

    async def check(self, call: ToolCall, conversation_id: str, prompt_id: UUID) -> None:
        """Wait for a decision on ``call``; return if approved.

        Raises:
            ToolError: Denied, or no decision within ``timeout``; the message goes to the model.
            ApprovalWithdrawnError: ``bus.stop()`` ended the wait; the prompt fails.
        """
        decision: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        waiting = PendingApproval(
            call.id, call.name, call.arguments, conversation_id, prompt_id, decision
        )
        timeout = self.timeout
        request = ToolApprovalRequestedEvent(
            call_id=call.id,
            tool_name=call.name,
            arguments=call.arguments,
            conversation_id=conversation_id,
            prompt_id=prompt_id,
            timeout=timeout,
            approval_id=waiting.approval_id,
        )
        command_id: UUID | None = None
        decided_by: Literal["command", "timeout", "cancelled"] = "cancelled"
        outcome = Decision(False, ENDED_FIRST, None)  # unless decided or timed out
        try:
            with self._waiting(waiting, request):
                await self.bus.publish(request)
                try:
                    outcome = await asyncio.wait_for(decision, timeout)
                    decided_by = "cancelled" if outcome.withdrawn else "command"
                    command_id = outcome.command_id
                except TimeoutError:
                    outcome, decided_by = Decision(False, None, None), "timeout"
        finally:
            if decided_by == "cancelled" and not outcome.withdrawn:
                noted = _cut_short.get()
                if noted is not None:
                    noted.append(waiting)  # the prompt ended first: its timeout may say why
            decided = ToolApprovalDecidedEvent(
                call_id=call.id,
                tool_name=call.name,
                conversation_id=conversation_id,
                prompt_id=prompt_id,
                approved=outcome.approved,
                reason=outcome.reason,
                decided_by=decided_by,
                approval_id=waiting.approval_id,
                command_id=command_id,
            )
            self._remember(decided)
            try:
                # Also when the prompt was stopped (or failed) before a decision: every process
                # must forget the call, even if this task is cancelled while telling them.
                await self._publish_shielded(decided)
            finally:
                waiting.ended.set()
        if outcome.approved:
            return
        if outcome.withdrawn:
            raise ApprovalWithdrawnError(
                f"{call.name} was not run: the bus stopped while the call (call_id "
                f"{call.id!r}, conversation {conversation_id!r}) waited for approval, so its "
                "prompt ended without another model call. Start the bus and send the prompt "
                "again."
            )
        if decided_by == "timeout":
            raise ToolError(
                f"{call.name} was not run: nobody approved the call within {timeout:g} s"
            )
        because = f": {outcome.reason}" if outcome.reason else ""
        raise ToolError(f"{call.name} was not run: the user denied the call{because}")

    async def _publish_shielded(self, decided: ToolApprovalDecidedEvent) -> None:
        """Publish a decision; a cancellation of this task does not stop the publication."""
        publishing = asyncio.ensure_future(self.bus.publish(decided))
        self._publishing.add(publishing)
        publishing.add_done_callback(self._published)
        # asyncio.wait never cancels what it waits for: cancelled here, the publication goes
        # on in the background (and the cancellation goes on to the caller).
        await asyncio.wait({publishing})

    def _published(self, publishing: asyncio.Future[None]) -> None:
        self._publishing.discard(publishing)
        if not publishing.cancelled() and publishing.exception() is not None:
            logger.error(
                "could not publish the decision on a tool call that waited for approval; "
                "other processes may list it as waiting until its approval timeout",
                exc_info=publishing.exception(),
            )
