"""Commands sent from here and waiting for their reply, and what ends a wait without one.

A wait ends with the command's reply (the caller's reply loop matches it by its
request id), or:

- every process that handled its type left the shared bus (:meth:`~WaitingCommands.watch`,
  at each heartbeat): ``HandlerNotFoundError``;
- its caller stopped waiting (a timeout, a cancel): the request is recorded as
  abandoned and its entry deleted, so no worker runs it later
  (:meth:`~WaitingCommands.abandon`);
- this process leaves the shared bus (:meth:`~WaitingCommands.abandon_all`), or Redis
  lost the command's entry with its data (:meth:`~WaitingCommands.fail_lost`): a
  ``ConnectionError``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from llmgine.bus.remote.adverts import Adverts
from llmgine.bus.remote.bounded import bounded
from llmgine.bus.remote.connection import Connection
from llmgine.bus.remote.entries import ABANDONED, RESULT_TTL
from llmgine.bus.remote.tasks import NETWORK_ERRORS
from llmgine.errors import HandlerNotFoundError
from llmgine.messages.commands import Command

__all__ = ["ABANDON_GRACE", "ABSENT_BEATS", "Waiting", "WaitingCommands"]

logger = logging.getLogger(__name__)

ABSENT_BEATS = 3
"""Heartbeats in a row (each on time) at which no process advertises a waiting command's type
before its caller is told every handling process left."""

ABANDON_GRACE = 1.0
"""Seconds a caller that stopped waiting gives Redis to record the abandon."""


@dataclass
class Waiting:
    """A command sent from here whose reply has not come yet."""

    future: asyncio.Future[dict[str, Any]]
    stream: str
    command_type: type[Command]
    sent_at: float
    deadline: int = 0
    """The caller's deadline in ms on the Redis server's clock (0: none)."""
    entry_id: bytes | None = field(default=None)
    abandoned: bool = False


class WaitingCommands:
    """The commands sent from here whose reply has not come yet, by request id.

    Args:
        conn: The connection to the shared bus.
        adverts: Who handles which command type (to notice that all left).
    """

    def __init__(self, conn: Connection, adverts: Adverts) -> None:
        self.conn = conn
        self.adverts = adverts
        self.by_request: dict[str, Waiting] = {}
        self._abandoning: set[asyncio.Task[Any]] = set()
        self._absent: dict[type[Command], int] = {}
        """Heartbeats in a row at which no process advertised a waited-for type."""
        self._last_watch = time.monotonic()

    async def abandon(self, request: str, waiting: Waiting) -> dict[str, Any] | None:
        """Record ``request`` as abandoned, shielded: a second cancel does not stop it.

        Returns the reply recorded before the mark, if one was (see :meth:`_abandon`).
        """
        task = asyncio.get_running_loop().create_task(self._abandon(request, waiting))
        self._abandoning.add(task)
        task.add_done_callback(self._abandoning.discard)
        return await asyncio.shield(task)

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
        heartbeat = self.conn.heartbeat
        if now - self._last_watch > 2.5 * heartbeat:
            self._absent.clear()  # a late beat: what was seen since proves nothing
        self._last_watch = now
        horizon = now - 2 * heartbeat
        old = [w for w in self.by_request.values() if w.sent_at < horizon and not w.future.done()]
        absent: dict[type[Command], int] = {}
        for waiting in old:
            kind = waiting.command_type
            if kind not in absent:
                present = await self.adverts.handled_elsewhere(kind, fresh=True)
                absent[kind] = 0 if present else self._absent.get(kind, 0) + 1
        if time.monotonic() - now > heartbeat:
            self._absent.clear()  # Redis was slow to answer: a stall, not a departure
            return
        self._absent = absent
        for waiting in old:
            kind = waiting.command_type
            # As long as the adverts of the type last, too: a worker with a longer
            # heartbeat than this process's has time to advertise again after a stall.
            lifetime = self.adverts.lifetime(kind) / heartbeat
            beats = max(ABSENT_BEATS, math.ceil(lifetime))
            if self._absent.get(kind, 0) >= beats and not waiting.future.done():
                waiting.future.set_exception(
                    HandlerNotFoundError(
                        f"Every process that handled {kind.__name__} left the shared bus "
                        "before answering; the command was not run to completion."
                    )
                )

    async def _abandon(self, request: str, waiting: Waiting) -> dict[str, Any] | None:
        """Mark a request its caller gave up on, and delete its entry: no worker runs it later.

        Returns the reply recorded before the mark, if one was (the command completed:
        the caller gets its result). Given :data:`ABANDON_GRACE` seconds: with Redis
        stalled, the caller is not kept waiting (a deadline on the entry still keeps
        workers from starting it).
        """
        key = self.conn.keys.result(request)
        try:
            # Marked even when the XADD's reply never came: it may still reach Redis.
            pipe = self.conn.redis.pipeline(transaction=False)
            pipe.set(key, ABANDONED, nx=True, ex=RESULT_TTL)
            pipe.get(key)
            if waiting.entry_id is not None:
                pipe.xdel(waiting.stream, waiting.entry_id)
            done = await bounded(pipe.execute(), time.monotonic() + ABANDON_GRACE)
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

    async def abandon_all(self, why: str, timeout: float) -> int:
        """Before leaving: fail every waiting caller, and make sure no worker runs their commands.

        They are marked abandoned and deleted now, not in the background: a caller told
        its command failed may well send it again. Returns how many could not be
        marked within ``timeout`` seconds (Redis unreachable or stalled).
        """
        waiting = [(rid, w) for rid, w in self.by_request.items() if not w.future.done()]
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
                pipe = self.conn.redis.pipeline(transaction=False)
                for request, entry in sent:
                    pipe.set(self.conn.keys.result(request), ABANDONED, nx=True, ex=RESULT_TTL)
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
        sent = [w for w in self.by_request.values() if w.entry_id is not None]
        if not sent:
            return 0
        pipe = self.conn.redis.pipeline(transaction=False)
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
                    f"Redis at {self.conn.where} lost its data (it restarted without "
                    f"persistence) while this {waiting.command_type.__name__} was in flight; "
                    "it was not sent again, because a worker may have been running it and a "
                    "command never runs twice. Check whether it ran (the workers' logs), then "
                    "execute it again."
                )
            )
        return lost
