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
import math
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from redis.exceptions import TimeoutError as RedisTimeoutError

from llmgine.bus.handlers import HandlerTimedOut
from llmgine.bus.registry import HandlerEntry
from llmgine.bus.remote.keys import redact, type_key
from llmgine.bus.remote.tasks import NETWORK_ERRORS, raise_if_cancelled
from llmgine.errors import HandlerNotFoundError
from llmgine.messages.commands import Command, CommandResult
from llmgine.observability.codec import encode
from llmgine.observability.spans import current_span

if TYPE_CHECKING:
    from llmgine.bus.remote.link import RedisLink

__all__ = ["ABANDONED", "RESULT_TTL", "RemoteCaller"]

logger = logging.getLogger(__name__)

ABANDONED = b'{"abandoned":true}'
"""The recorded reply of a command its caller stopped waiting for: never run later."""

RESULT_TTL = 24 * 3600
"""Seconds a request's recorded reply is kept (its idempotency window)."""

ABSENT_BEATS = 3
"""Heartbeats in a row (each on time) at which no process advertises a waiting command's type
before its caller is told every handling process left."""

ABANDON_GRACE = 1.0
"""Seconds a caller that stopped waiting gives Redis to record the abandon."""


T = TypeVar("T")

MARGIN = 0.1
"""Seconds (at most a tenth of the timeout) before its deadline that a caller stops waiting:
time to record the abandon, or to find the reply recorded first, within the timeout."""


def _leave(task: asyncio.Future[Any]) -> None:
    """Leave a call behind: cancelled, and its outcome retrieved when it comes (no warning)."""
    task.cancel()
    task.add_done_callback(lambda t: None if t.cancelled() else t.exception())


async def _bounded(call: Awaitable[T], deadline: float | None) -> T:
    """Await ``call`` until ``deadline`` (``time.monotonic()``) at most, then raise TimeoutError.

    The call runs as a task of its own, left behind when time runs out: a cancel that
    redis-py swallows (in a connection's handshake, with Redis stalled) cannot hold the
    caller past its deadline.
    """
    if deadline is None:
        return await call
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
    except BaseException:
        _leave(task)
        raise
    if not done:
        _leave(task)
        raise TimeoutError
    return task.result()


@dataclass
class _Waiting:
    """A command sent from here whose reply has not come yet."""

    future: asyncio.Future[dict[str, Any]]
    stream: str
    command_type: type[Command]
    sent_at: float
    deadline: int = 0
    """The caller's deadline in ms on the Redis server's clock (0: none)."""
    entry_id: bytes | None = field(default=None)
    abandoned: bool = False


class RemoteCaller:
    """The caller's side: sends commands and matches the replies that come back."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.reply_stream = link.keys.reply(link.process_id)
        self._waiting: dict[str, _Waiting] = {}
        self._abandoning: set[asyncio.Task[Any]] = set()
        self._absent: dict[type[Command], int] = {}
        """Heartbeats in a row at which no process advertised a waited-for type."""
        self._last_watch = time.monotonic()
        self.last_read = b"0-0"
        """The id of the last reply read (Redis makes ids that only grow)."""

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
            handled = await _bounded(self.link.handled_elsewhere(command_type), deadline)
        except (*NETWORK_ERRORS, TimeoutError) as exc:
            error: Exception = self.unreachable(exc)
            if isinstance(exc, TimeoutError) and timeout is not None:
                error = TimeoutError(
                    f"the command was not sent: Redis at {redact(self.link.url)} did not "
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
                f"(namespace {self.link.keys.namespace!r}). Register one with "
                f"bus.register_command_handler({command_type.__name__}, handler), or start a "
                "worker that does: python -m llmgine worker MODULE:FUNCTION --redis URL "
                "(the worker must import the class from the same module)."
            )

        async def run_remotely(command: Command) -> CommandResult:
            return await self.send(command, timeout, deadline)

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
        link = self.link
        detail = "did not answer in time" if isinstance(exc, TimeoutError) else "is unreachable"
        if not link.warned_unreachable:
            link.warned_unreachable = True
            logger.warning(
                "Redis at %s %s (%s): commands for other processes fail until it is back.",
                redact(link.url),
                detail,
                type(exc).__name__,
            )
        return ConnectionError(
            f"The shared bus's Redis at {redact(link.url)} {detail} "
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
        link = self.link
        if timeout is not None and deadline is None:
            deadline = time.monotonic() + timeout
        own = None
        if timeout is not None and deadline is not None:
            own = deadline - min(MARGIN, timeout / 10)
        request = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        stream = link.keys.command(type_key(type(command)))
        waiting = _Waiting(future, stream, type(command), time.monotonic())
        fields = {b"r": self.reply_stream.encode(), b"o": link.process_id, b"a": request}
        if timeout is not None:
            waiting.deadline = link.server_time_ms() + max(1, int(timeout * 1000))
            fields[b"d"] = str(waiting.deadline)
        self._waiting[request] = waiting
        reply: dict[str, Any] | None = None
        recorded: dict[str, Any] | None = None
        try:
            try:
                # Handlers registered here since the last announcement are announced
                # first, and the command says which announcement: the worker reads it
                # before running.
                version = await _bounded(link.listeners.announce(), own)
                line = encode("command", command, current_span())
                waiting.entry_id = await _bounded(
                    link.redis.xadd(stream, {b"m": line, **fields, b"v": str(version)}), own
                )
            except TimeoutError:
                raise  # the caller's deadline (below)
            except NETWORK_ERRORS as exc:
                # Refused: not sent, nothing to mark. Timed out: it may reach Redis yet.
                waiting.abandoned = not isinstance(exc, RedisTimeoutError)
                raise self.unreachable(exc) from None
            link.warned_unreachable = False
            # Or a failure from watch(), fail_lost() or close().
            reply = await _bounded(asyncio.shield(future), own)
        except TimeoutError:
            pass  # the deadline passed: abandoned below, unless a reply was recorded first
        finally:
            self._waiting.pop(request, None)
            if reply is None and not waiting.abandoned:
                # Recorded before the failure reaches the caller: a command said to have
                # failed never runs later. Shielded: a second cancel does not stop it.
                task = asyncio.get_running_loop().create_task(self._abandon(request, waiting))
                self._abandoning.add(task)
                task.add_done_callback(self._abandoning.discard)
                recorded = await asyncio.shield(task)
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
                until = time.monotonic() + 2 * link.heartbeat + 1
                await _bounded(link.events.read_past(upto), until)
        result = CommandResult.model_validate(reply["result"])
        result.metadata = {**result.metadata, "llmgine.worker": reply.get("worker")}
        if reply.get("traceback"):
            result.metadata["llmgine.traceback"] = reply["traceback"]
        return result

    async def watch(self) -> None:
        """Fail the commands whose handlers all left the shared bus.

        Called at each heartbeat. Without it such a caller would wait for its timeout
        (or forever, with none). A type counts as gone once no process advertised it at
        :data:`ABSENT_BEATS` heartbeats in a row (and for as long as its adverts last),
        each one on time: after a stall (of
        Redis, or of this process's loop) the adverts that lapsed meanwhile are not taken
        for departures, and the workers have heartbeats of their own to advertise again.
        """
        now = time.monotonic()
        if now - self._last_watch > 2.5 * self.link.heartbeat:
            self._absent.clear()  # a late beat: what was seen since proves nothing
        self._last_watch = now
        horizon = now - 2 * self.link.heartbeat
        old = [w for w in self._waiting.values() if w.sent_at < horizon and not w.future.done()]
        absent: dict[type[Command], int] = {}
        for waiting in old:
            kind = waiting.command_type
            if kind not in absent:
                present = await self.link.handled_elsewhere(kind, fresh=True)
                absent[kind] = 0 if present else self._absent.get(kind, 0) + 1
        if time.monotonic() - now > self.link.heartbeat:
            self._absent.clear()  # Redis was slow to answer: a stall, not a departure
            return
        self._absent = absent
        for waiting in old:
            kind = waiting.command_type
            # As long as the adverts of the type last, too: a worker with a longer
            # heartbeat than this process's has time to advertise again after a stall.
            lifetime = self.link.advert_lifetime(kind) / self.link.heartbeat
            beats = max(ABSENT_BEATS, math.ceil(lifetime))
            if self._absent.get(kind, 0) >= beats and not waiting.future.done():
                waiting.future.set_exception(
                    HandlerNotFoundError(
                        f"Every process that handled {kind.__name__} left the shared bus "
                        "before answering; the command was not run to completion."
                    )
                )

    async def _abandon(self, request: str, waiting: _Waiting) -> dict[str, Any] | None:
        """Mark a request its caller gave up on, and delete its entry: no worker runs it later.

        Returns the reply recorded before the mark, if one was (the command completed:
        the caller gets its result). Given :data:`ABANDON_GRACE` seconds: with Redis
        stalled, the caller is not kept waiting (a deadline on the entry still keeps
        workers from starting it).
        """
        key = self.link.keys.result(request)
        try:
            # Marked even when the XADD's reply never came: it may still reach Redis.
            pipe = self.link.redis.pipeline(transaction=False)
            pipe.set(key, ABANDONED, nx=True, ex=RESULT_TTL)
            pipe.get(key)
            if waiting.entry_id is not None:
                pipe.xdel(waiting.stream, waiting.entry_id)
            done = await _bounded(pipe.execute(), time.monotonic() + ABANDON_GRACE)
        except (*NETWORK_ERRORS, TimeoutError) as exc:
            later = (
                "its deadline keeps workers from starting it later"
                if waiting.deadline
                else "a worker may still run it (give execute() a timeout to prevent that)"
            )
            logger.warning(
                "Could not mark the abandoned %s as such in Redis (%s): %s.",
                waiting.command_type.__name__,
                type(exc).__name__,
                later,
            )
            return None
        stored, recorded = done[0], done[1]
        if stored or not isinstance(recorded, bytes) or recorded == ABANDONED:
            return None
        try:
            reply = orjson.loads(recorded)
        except orjson.JSONDecodeError:
            return None
        return reply if isinstance(reply, dict) and "result" in reply else None

    async def reply_loop(self) -> None:
        """Read the replies sent to this process and hand each to its waiting caller.

        It reads on from the last reply read; :meth:`trim` drops what was read.
        """
        redis = self.link.blocking
        block = int(self.link.heartbeat * 1000)
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

    async def abandon_waiting(self, why: str, timeout: float) -> int:
        """Before leaving: fail every waiting caller, and make sure no worker runs their commands.

        They are marked abandoned and deleted now, not in the background: a caller told
        its command failed may well send it again. Returns how many could not be
        marked within ``timeout`` seconds (Redis unreachable or stalled).
        """
        waiting = [(rid, w) for rid, w in self._waiting.items() if not w.future.done()]
        for _, entry in waiting:
            entry.abandoned = True
            entry.future.set_exception(ConnectionError(why))
        sent = [(rid, w) for rid, w in waiting if w.entry_id is not None]
        try:
            async with asyncio.timeout(timeout):
                if self._abandoning:
                    await asyncio.gather(*self._abandoning, return_exceptions=True)
                if not sent:
                    return 0
                pipe = self.link.redis.pipeline(transaction=False)
                for request, entry in sent:
                    pipe.set(self.link.keys.result(request), ABANDONED, nx=True, ex=RESULT_TTL)
                    pipe.xdel(entry.stream, entry.entry_id)
                await pipe.execute()
        except (*NETWORK_ERRORS, TimeoutError):
            return len(sent)
        return 0

    async def fail_lost(self) -> int:
        """After Redis lost its data: fail the waiting commands whose entries went with it.

        Returns how many failed. A command sent after the loss is still in its stream
        and goes on waiting.
        """
        sent = [w for w in self._waiting.values() if w.entry_id is not None]
        if not sent:
            return 0
        pipe = self.link.redis.pipeline(transaction=False)
        for waiting in sent:
            pipe.xrange(waiting.stream, waiting.entry_id, waiting.entry_id, count=1)
        found = await pipe.execute(raise_on_error=False)
        lost = 0
        for waiting, entries in zip(sent, found, strict=True):
            if entries or waiting.future.done():
                continue
            lost += 1
            waiting.future.set_exception(
                ConnectionError(
                    f"Redis at {redact(self.link.url)} lost its data (it restarted without "
                    f"persistence) while this {waiting.command_type.__name__} was in flight; "
                    "it was not sent again, because a worker may have been running it and a "
                    "command never runs twice. Check whether it ran (the workers' logs), then "
                    "execute it again."
                )
            )
        return lost
