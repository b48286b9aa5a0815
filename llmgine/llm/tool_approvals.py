"""Where tool calls wait for a person: :class:`ToolApprovals`, one per engine.

The messages it reads and publishes (:class:`ApproveToolCallCommand`, the
``ToolApproval*Event`` classes) live in :mod:`llmgine.llm.approval`, whose docstring
says how an approval finds its call across conversations and processes; a call waiting
here is a :class:`~llmgine.llm.pending_approval.PendingApproval`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from llmgine.bus.bus import MessageBus
from llmgine.errors import AmbiguousApprovalError, ApprovalNotFoundError
from llmgine.llm.approval import (
    ApproveToolCallCommand,
    ToolApprovalDecidedEvent,
    ToolApprovalEvent,
    ToolApprovalRelayedEvent,
    ToolApprovalRequestedEvent,
    describe_request,
)
from llmgine.llm.approval_wait import ApprovalWait
from llmgine.llm.pending_approval import (
    Decision,
    PendingApproval,
    ambiguous_call,
    key_mismatch,
    no_longer_waiting,
    settle,
    waiting_now,
)

__all__ = ["PendingApproval", "ToolApprovals"]

logger = logging.getLogger(__name__)

DEFAULT_APPROVAL_TIMEOUT = 60.0
"""Below a prompt's default timeout (120 s): an unanswered call goes back to the model as denied."""
DEFAULT_RELAY_TIMEOUT = 10.0
_REMEMBERED = 1000  # requests heard of are kept up to ten times this many


class ToolApprovals(ApprovalWait):
    """The tool calls of one engine that wait for a person, and the command that decides them.

    Registers the one handler of :class:`ApproveToolCallCommand` on ``bus``, and one
    handler of the approval events (:class:`ToolApprovalEvent`), to know the calls waiting
    in other processes of a shared bus and to apply decisions relayed from them.
    ``bus.stop()`` withdraws the calls still waiting here (see :meth:`withdraw_all`).

    Args:
        bus: The engine's bus.
        timeout: Seconds a call waits for a decision before it counts as denied;
            ``None`` waits as long as it takes. Set it later as ``engine.approvals.timeout``.
            A positive finite number or ``None``, else ``ConfigurationError``.
        relay_timeout: On a shared bus, seconds a decision for a call waiting in another
            process may take to be applied there before the command fails.
    """

    def __init__(
        self,
        bus: MessageBus,
        timeout: float | None = DEFAULT_APPROVAL_TIMEOUT,
        relay_timeout: float = DEFAULT_RELAY_TIMEOUT,
    ) -> None:
        self.bus = bus
        self.timeout = timeout
        self.relay_timeout = relay_timeout
        self._pending: dict[str, PendingApproval] = {}
        self._known: dict[str, ToolApprovalRequestedEvent] = {}  # waiting anywhere, by approval id
        self._decided: OrderedDict[str, ToolApprovalDecidedEvent] = OrderedDict()
        self._answers: dict[str, list[asyncio.Future[ToolApprovalDecidedEvent]]] = {}
        self._heard: set[asyncio.Future[None]] = set()
        self._publishing: set[asyncio.Future[None]] = set()
        previous = getattr(bus.command_handler_of(ApproveToolCallCommand), "__self__", None)
        if isinstance(previous, ToolApprovals) and previous is not self:
            # A new engine on the bus takes over: calls still waiting in the old one stay decidable.
            previous.detach()
            self._pending, self._known, self._decided = (
                previous._pending,
                previous._known,
                previous._decided,
            )
        bus.register_command_handler(ApproveToolCallCommand, self.handle_approve, replace=True)
        bus.register_event_handler(ToolApprovalEvent, self.on_approval_event)
        # First: before the bus stops delivering and leaves the shared bus, so a prompt run
        # here for another process ends (and its caller gets the result) and the other
        # processes hear the withdrawals.
        self._unhook_stop = bus.on_stop(self.withdraw_all, first=True)

    def detach(self) -> None:
        """Stop following the bus's approval events and its stop (another engine took over)."""
        self.bus.unregister_event_handler(ToolApprovalEvent, self.on_approval_event)
        self._unhook_stop()

    def __repr__(self) -> str:
        pending = [p.call_id for p in self.pending]
        return f"<ToolApprovals pending={pending} timeout={self.timeout}s>"

    @property
    def pending(self) -> list[PendingApproval]:
        """The calls waiting in this process, oldest first."""
        return list(self._pending.values())

    @property
    def waiting(self) -> list[ToolApprovalRequestedEvent]:
        """The requests of every call known to wait, oldest first.

        This process's own, and on a shared bus the other processes' it has heard of.
        """
        now = time.time()
        for approval_id, request in list(self._known.items()):
            if approval_id in self._pending or request.timeout is None:
                continue
            if request.timestamp.timestamp() + request.timeout + self.relay_timeout < now:
                del self._known[approval_id]  # its process went away without a decision
        return list(self._known.values())

    # ------------------------------------------------------------ deciding

    async def handle_approve(self, command: ApproveToolCallCommand) -> str:
        """Decide a waiting call; the result says what was decided.

        Raises:
            ApprovalNotFoundError: No such call is waiting (already decided, timed out,
                unknown), or no process applied the decision within ``relay_timeout``.
            AmbiguousApprovalError: ``call_id`` matches several waiting calls.
        """
        approval_id = await self._resolve(command)
        decision = Decision(command.approve, command.reason, command.id)
        verb = "approved" if command.approve else "denied"
        waiting = self._pending.pop(approval_id, None)
        if waiting is not None and not waiting.decision.done():
            self._apply(waiting, decision)
            return f"{verb} {waiting.tool_name} ({waiting.call_id})"
        decided = self._decided.get(approval_id)
        if decided is not None:
            raise ApprovalNotFoundError(no_longer_waiting(decided))
        if self.bus.remote is None:
            raise ApprovalNotFoundError(
                f"no tool call with approval_id {approval_id} is waiting for approval; "
                f"waiting now: {waiting_now(self.waiting)}"
            )
        decided = await self._relay(approval_id, command)
        if decided.command_id != command.id:
            raise ApprovalNotFoundError(no_longer_waiting(decided))
        return f"{verb} {decided.tool_name} ({decided.call_id})"

    async def _resolve(self, command: ApproveToolCallCommand) -> str:
        """The approval id the command means; refuse anything ambiguous."""
        if command.approval_id:
            # Every key given must be the call's: approval_id with another call's
            # conversation_id decides nothing.
            known = self._known.get(command.approval_id)
            decided = self._decided.get(command.approval_id)
            mismatch = ""
            if known is not None:
                mismatch = key_mismatch(command.call_id, command.conversation_id, known)
                shown = describe_request(known)
            elif decided is not None:
                mismatch = key_mismatch(command.call_id, command.conversation_id, decided)
                shown = no_longer_waiting(decided)
            if mismatch:
                raise ApprovalNotFoundError(
                    f"approval_id {command.approval_id} is for {mismatch}; nothing was "
                    f"decided. Give only the approval_id, or the keys of the call you "
                    f"mean: {shown}"
                )
            return command.approval_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.relay_timeout
        while True:
            matches = [
                r
                for r in self.waiting
                if r.call_id == command.call_id
                and command.conversation_id in (None, r.conversation_id)
            ]
            if len(matches) == 1:
                return matches[0].approval_id
            if len(matches) > 1:
                raise AmbiguousApprovalError(
                    ambiguous_call(command.call_id, command.conversation_id, matches)
                )
            remaining = deadline - loop.time()
            if self.bus.remote is None or remaining <= 0:
                where = f" in conversation {command.conversation_id!r}"
                raise ApprovalNotFoundError(
                    f"no tool call {command.call_id!r}"
                    f"{where if command.conversation_id else ''} is waiting for approval; "
                    f"waiting now: {waiting_now(self.waiting)}"
                )
            # On a shared bus the request may still be on its way to this process.
            heard: asyncio.Future[None] = loop.create_future()
            self._heard.add(heard)
            try:
                await asyncio.wait_for(heard, remaining)
            except TimeoutError:
                pass
            finally:
                self._heard.discard(heard)

    async def _relay(
        self, approval_id: str, command: ApproveToolCallCommand
    ) -> ToolApprovalDecidedEvent:
        """Send a decision to the process where the call waits; return its outcome."""
        answer: asyncio.Future[ToolApprovalDecidedEvent] = (
            asyncio.get_running_loop().create_future()
        )
        self._answers.setdefault(approval_id, []).append(answer)
        try:
            await self.bus.publish(
                ToolApprovalRelayedEvent(
                    approval_id=approval_id,
                    approve=command.approve,
                    reason=command.reason,
                    command_id=command.id,
                    call_id=command.call_id or None,
                    conversation_id=command.conversation_id,
                )
            )
            return await asyncio.wait_for(answer, self.relay_timeout)
        except TimeoutError:
            raise ApprovalNotFoundError(
                f"no process of the shared bus applied the decision on approval_id "
                f"{approval_id} within {self.relay_timeout:g} s: no such call waits (it was "
                f"decided, timed out or never asked, or its call_id / conversation_id are not "
                f"the command's) or its engine's process is gone; "
                f"waiting now: {waiting_now(self.waiting)}"
            ) from None
        finally:
            answers = self._answers.get(approval_id, [])
            if answer in answers:
                answers.remove(answer)
            if not answers:
                self._answers.pop(approval_id, None)

    def _apply(self, waiting: PendingApproval, decision: Decision) -> None:
        """Decide a call waiting in this process (already taken out of ``_pending``)."""
        self._remember(
            ToolApprovalDecidedEvent(
                call_id=waiting.call_id,
                tool_name=waiting.tool_name,
                conversation_id=waiting.conversation_id,
                prompt_id=waiting.prompt_id,
                approved=decision.approved,
                reason=decision.reason,
                decided_by="command",
                approval_id=waiting.approval_id,
                command_id=decision.command_id,
            )
        )
        settle(waiting.decision, decision)

    # ------------------------------------------------------------ the bus's approval events

    async def on_approval_event(self, event: ToolApprovalEvent) -> None:
        """Follow the approval events of every process on the bus (the one handler)."""
        if isinstance(event, ToolApprovalRequestedEvent):
            await self.on_requested(event)
        elif isinstance(event, ToolApprovalDecidedEvent):
            await self.on_decided(event)
        elif isinstance(event, ToolApprovalRelayedEvent):
            await self.on_relayed(event)

    async def on_requested(self, event: ToolApprovalRequestedEvent) -> None:
        """Note a call waiting somewhere on the bus (this process or another)."""
        if event.approval_id in self._decided:
            return
        self._known[event.approval_id] = event
        while len(self._known) > 10 * _REMEMBERED:
            del self._known[next(iter(self._known))]
        for heard in list(self._heard):
            if not heard.done():
                heard.set_result(None)

    async def on_decided(self, event: ToolApprovalDecidedEvent) -> None:
        """Forget a decided call; answer a relayed decision waiting for it."""
        if event.approval_id is None:
            return
        self._remember(event)
        for answer in self._answers.get(event.approval_id, []):
            if not answer.done():
                answer.set_result(event)

    async def on_relayed(self, event: ToolApprovalRelayedEvent) -> None:
        """Apply a decision relayed by another process, if the call waits here and is the one.

        A decision whose ``call_id`` or ``conversation_id`` is not the call's is not applied
        (the relaying command then fails after its ``relay_timeout``).
        """
        waiting = self._pending.get(event.approval_id)
        if waiting is None or waiting.decision.done():
            return
        mismatch = key_mismatch(event.call_id, event.conversation_id, waiting)
        if mismatch:
            logger.warning(
                "not applying the decision of command %s on approval_id %s: it is for %s",
                event.command_id,
                event.approval_id,
                mismatch,
            )
            return
        del self._pending[event.approval_id]
        self._apply(waiting, Decision(event.approve, event.reason, event.command_id))
