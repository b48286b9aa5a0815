"""Commands across processes, the caller's side: send a command, wait for its reply.

The caller adds the command's envelope to the stream of its type, with the stream its
reply should go to, the version of its handlers' announcement, a request id of its own
(one per ``execute()`` call: the same command object executed twice runs twice, as
in-process, and two processes executing one command each get their answer) and, with
``execute(timeout=)``, its deadline on the Redis server's clock (no worker starts it
later). It waits for the reply on its own reply stream: one blocking read, on one
connection, serves every waiting command, however many.

A caller that stops waiting (a timeout, a cancel, every handling process gone) records
the request as abandoned and deletes its entry, so no worker runs it later; with Redis
stalled that write is given a second at most (the deadline on the entry then keeps
workers from starting it). When a worker's reply was recorded first, the command ran:
that reply is the caller's result, even as its timeout fires. Each call to Redis made
for an ``execute(timeout=)`` ends by its deadline, however stalled Redis is (a call
still running then is left behind). With Redis unreachable, ``execute()`` gives a failed result
(``error_type`` ``"ConnectionError"``), and a warning is logged once per outage. When Redis
loses its data (a restart without persistence), the commands whose entries were lost
fail at once with a clear error; they are not sent again, since a worker may have been
running them and a command never runs twice to completion.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.exceptions import TimeoutError as RedisTimeoutError

from llmgine.bus.registry import HandlerEntry
from llmgine.bus.remote.adverts import Adverts
from llmgine.bus.remote.bounded import bounded
from llmgine.bus.remote.connection import Connection
from llmgine.bus.remote.entries import ABANDONED, RESULT_TTL
from llmgine.bus.remote.keys import type_key
from llmgine.bus.remote.listeners import Listeners
from llmgine.bus.remote.tasks import NETWORK_ERRORS, raise_if_cancelled
from llmgine.bus.remote.waiting import Waiting, WaitingCommands
from llmgine.errors import HandlerNotFoundError, HandlerTimedOut
from llmgine.messages.commands import Command, CommandResult
from llmgine.observability.codec import encode
from llmgine.observability.spans import current_span

__all__ = ["ABANDONED", "RESULT_TTL", "RemoteCaller"]  # the markers, for tests and tools

logger = logging.getLogger(__name__)

ABANDON_WAIT = 1.0
"""Seconds at most a caller past its deadline waits to learn whether its abandon was first."""

MARGIN = 0.1
"""Seconds (at most a tenth of the timeout) before its deadline that a caller stops waiting:
time to record the abandon, or to find the reply recorded first, within the timeout."""


class RemoteCaller:
    """The caller's side: sends commands and matches the replies that come back.

    Args:
        conn: The connection to the shared bus.
        listeners: This process's announcement (made before a command is sent).
        adverts: Who handles which command type.
        server_ms: The Redis server's clock now, in ms (deadlines are on it).
        read_past: Returns once this process has read the events stream past an entry.
        waiting: The commands sent from here waiting for their reply.
    """

    def __init__(
        self,
        conn: Connection,
        listeners: Listeners,
        adverts: Adverts,
        server_ms: Callable[[], int],
        read_past: Callable[[str], Awaitable[None]],
        waiting: WaitingCommands,
    ) -> None:
        self.conn = conn
        self.listeners = listeners
        self.adverts = adverts
        self.server_ms = server_ms
        self.read_past = read_past
        self.reply_stream = conn.keys.reply(conn.process_id)
        self.warned_unreachable = False
        """Whether the warning that Redis is unreachable was logged (once per outage)."""
        self.waiting = waiting
        self._waiting = waiting.by_request
        self.last_read = b"0-0"
        """The id of the last reply read (Redis makes ids that only grow)."""
        self._data_lost_at = -float("inf")
        """When this process last found that Redis lost its data (``time.monotonic()``)."""

    async def entry(self, command_type: type[Command], timeout: float | None) -> HandlerEntry:
        """Return a handler entry that runs ``command_type`` remotely.

        Redis unreachable (or silent for ``timeout`` seconds): an entry whose command
        fails with a ``ConnectionError`` (a ``TimeoutError``).

        Raises:
            HandlerNotFoundError: No connected process handles the type.
        """
        key = type_key(command_type)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            handled = await bounded(self.adverts.handled_elsewhere(command_type), deadline)
            if not handled:
                handled = await self._advertised_again(command_type, deadline)
        except (*NETWORK_ERRORS, TimeoutError) as exc:
            error: Exception = self.unreachable(exc)
            if isinstance(exc, TimeoutError) and timeout is not None:
                error = TimeoutError(
                    f"the command was not sent: Redis at {self.conn.where} did not "
                    f"answer within the {timeout:g} s timeout"
                )

            async def fail(command: Command) -> CommandResult:
                raise error

            return HandlerEntry(
                fn=fail, key=("remote", key), name=f"remote:{key}", is_async=True, order=-1,
                owner=None,
            )  # fmt: skip
        if not handled:
            raise HandlerNotFoundError(
                f"No handler for {command_type.__name__} ({key}), here or in any process "
                "connected to the shared bus "
                f"(namespace {self.conn.keys.namespace!r}). Register one with "
                f"bus.register_command_handler({command_type.__name__}, handler), or start a "
                "worker that does: python -m llmgine worker MODULE:FUNCTION --redis URL "
                "(the worker must import the class from the same module)."
            )

        first_try = [deadline]  # the look-up counts against the first try's timeout

        async def run_remotely(command: Command) -> CommandResult:
            # A retry (a Retry policy calls the entry again) gets a whole timeout of its own.
            start = first_try.pop() if first_try else None
            return await self.send(command, timeout, start)

        return HandlerEntry(
            fn=run_remotely,
            key=("remote", key),
            name=f"remote:{key}",
            is_async=True,
            order=-1,
            owner=None,
        )

    def unreachable(self, exc: BaseException) -> ConnectionError:
        """The error a command fails with when Redis is unreachable; warns once per outage."""
        where = self.conn.where
        detail = "did not answer in time" if isinstance(exc, TimeoutError) else "is unreachable"
        if not self.warned_unreachable:
            self.warned_unreachable = True
            logger.warning(
                "Redis at %s %s (%s): commands for other processes fail until it is back.",
                where,
                detail,
                type(exc).__name__,
            )
        return ConnectionError(
            f"The shared bus's Redis at {where} {detail} "
            f"({type(exc).__name__}: {exc}); the command was not run. Check that the server "
            "is running and reachable, then execute it again."
        )

    async def send(
        self, command: Command, timeout: float | None = None, deadline: float | None = None
    ) -> CommandResult:
        """Send ``command`` to the process that handles it and wait for its result.

        Every call to Redis made for it ends by the deadline (a stalled Redis included).
        A reply recorded before the caller's abandon is its result, even at the deadline.

        Args:
            command: The command.
            timeout: The caller's timeout: it travels as a deadline (on the Redis
                server's clock) that no worker starts the command after.
            deadline: When the timeout started, as ``time.monotonic() + timeout``
                (default: now).

        Raises:
            ConnectionError: Redis is unreachable (the command was not sent), or it
                lost the command.
            HandlerTimedOut: No reply within the timeout (the command was abandoned).
        """
        conn = self.conn
        if timeout is not None and deadline is None:
            deadline = time.monotonic() + timeout
        own = None
        if timeout is not None and deadline is not None:
            own = deadline - min(MARGIN, timeout / 10)
        request = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        stream = conn.keys.command(type_key(type(command)))
        waiting = Waiting(future, stream, type(command), time.monotonic())
        fields = {b"r": self.reply_stream.encode(), b"o": conn.process_id, b"a": request}
        if timeout is not None:
            waiting.deadline = self.server_ms() + max(1, int(timeout * 1000))
            fields[b"d"] = str(waiting.deadline)
        self._waiting[request] = waiting
        reply: dict[str, Any] | None = None
        recorded: dict[str, Any] | None = None
        try:
            try:
                # Handlers registered here since the last announcement are announced
                # first, and the command says which announcement: the worker reads it
                # before running.
                version = await bounded(self.listeners.announce(), own)
                line = encode("command", command, current_span())
                waiting.entry_id = await bounded(
                    conn.redis.xadd(stream, {b"m": line, **fields, b"v": str(version)}), own
                )
            except TimeoutError:
                raise  # the caller's deadline (below)
            except NETWORK_ERRORS as exc:
                # Refused: not sent, nothing to mark. Timed out: it may reach Redis yet.
                waiting.abandoned = not isinstance(exc, RedisTimeoutError)
                raise self.unreachable(exc) from None
            self.warned_unreachable = False
            # Or a failure from watch(), fail_lost() or close().
            reply = await bounded(asyncio.shield(future), own)
        except TimeoutError:
            pass  # the deadline passed: abandoned below, unless a reply was recorded first
        finally:
            self._waiting.pop(request, None)
            if reply is None and not waiting.abandoned:
                # Recorded before the failure reaches the caller: a command said to have
                # failed never runs later. Its round trip may find the reply recorded first
                # (then that is the result), so it is awaited a little past the deadline:
                # no longer than the timeout itself, within ABANDON_WAIT; with Redis
                # stalled, it finishes in the background.
                grace = ABANDON_WAIT if timeout is None else min(ABANDON_WAIT, max(timeout, 0.05))
                with contextlib.suppress(TimeoutError):
                    recorded = await bounded(
                        self.waiting.abandon(request, waiting), time.monotonic() + grace
                    )
        if reply is None:
            # Out of time. A reply recorded before the abandon is the command's result:
            # its effect happened.
            if future.done() and not future.cancelled() and future.exception() is None:
                reply = future.result()
            elif recorded is not None:
                reply = recorded
            else:
                raise HandlerTimedOut(timeout or 0.0)
        upto = reply.get("events_upto")
        if isinstance(upto, str):
            # The handler's events are on the stream before its reply: read them first, so
            # that they are here when execute() returns (bounded, should this process lag).
            with contextlib.suppress(TimeoutError):
                until = time.monotonic() + 2 * conn.heartbeat + 1
                await bounded(self.read_past(upto), until)
        result = CommandResult.model_validate(reply["result"])
        result.metadata = {**result.metadata, "llmgine.worker": reply.get("worker")}
        if reply.get("traceback"):
            result.metadata["llmgine.traceback"] = reply["traceback"]
        return result

    async def reply_loop(self) -> None:
        """Read the replies sent to this process and hand each to its waiting caller.

        It reads on from the last reply read; :meth:`trim` drops what was read.
        """
        redis = self.conn.blocking
        block = int(self.conn.heartbeat * 1000)
        while True:
            raise_if_cancelled()
            answer = await redis.xread({self.reply_stream: self.last_read}, count=100, block=block)
            for entry_id, fields in answer[0][1] if answer else ():
                self.last_read = entry_id
                try:
                    reply = orjson.loads(fields[b"r"])
                except (KeyError, TypeError, orjson.JSONDecodeError):
                    logger.warning("Skipped a reply that does not decode.")
                    continue
                request = reply.get("request") or reply.get("command_id", "")
                waiting = self._waiting.get(request) if isinstance(request, str) else None
                if waiting is not None and not waiting.future.done():
                    waiting.future.set_result(reply)
            # Let the callers take their results first: the next read can wait a turn.
            await asyncio.sleep(0)

    def trim(self, pipe: Any) -> None:
        """Add the trimming of the replies read so far to a heartbeat's pipeline."""
        if self.last_read != b"0-0":
            pipe.xtrim(self.reply_stream, minid=self.last_read, approximate=False)

    async def _advertised_again(self, command_type: type[Command], deadline: float | None) -> bool:
        """Whether a process advertises ``command_type`` again soon after Redis lost its data.

        The adverts went with the data: each process advertises again at its next
        heartbeat. For as long as the type's adverts last (at least ten heartbeats of
        this process) after the loss, a command waits for that rather than fail at once;
        otherwise this returns ``False`` at once.
        """
        grace = max(self.adverts.lifetime(command_type), 10 * self.conn.heartbeat)
        until = self._data_lost_at + grace
        if deadline is not None:
            until = min(until, deadline)
        while (left := until - time.monotonic()) > 0:
            await asyncio.sleep(min(self.conn.heartbeat / 2, left))
            found = self.adverts.handled_elsewhere(command_type, fresh=True)
            if await bounded(found, deadline):
                return True
        return False

    async def after_data_loss(self) -> None:
        """Redis lost its data: read the replies from the new stream's start; fail the lost."""
        self._data_lost_at = time.monotonic()
        self.last_read = b"0-0"
        lost = await self.waiting.fail_lost()
        if lost:
            logger.error(
                "%d command(s) sent from this process were lost with Redis's data; "
                "their execute() returns a failure.",
                lost,
            )
