"""Redis coming back: with its data (a restart with persistence), or without it.

A restart shows in the server's ``run_id`` (``INFO server``); a loss of data in the
namespace's epoch token, a random value the first process sets and every process
remembers: after a loss it is gone, and the first process to look sets a new one.
Each process checks the token when it reconnects, at every heartbeat, and when one of
its consumer groups is found missing.

After a loss, a process says so in its log and joins again: its consumer groups are
made anew (the one on the events stream reads the new stream from its start, since
everything in it was published after the loss, e.g. what other processes buffered
while Redis was down), its handlers are advertised and announced again, and the
commands it sent whose entries went with the data fail at once with a clear error
(they are not sent again: a worker may have been running them). Events other
processes had published and this one had not read yet are lost with the data.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from llmgine.bus.remote.connection import Connection

__all__ = ["Recovery"]

logger = logging.getLogger(__name__)


class Recovery:
    """What a link knows of the Redis server's identity and data, and how it joins again.

    Args:
        conn: The connection to the shared bus.
        make_groups: Makes this process's consumer groups, reading the events stream
            from ``events_from`` (``"0"``: its start; ``"$"``: what comes next).
        rejoin: Joins again after a loss of data, once the groups are made anew
            (advertise, announce, fail the commands that were lost).
        forget_after: Seconds of silence after which the others forget this process.
    """

    def __init__(
        self,
        conn: Connection,
        make_groups: Callable[..., Awaitable[None]],
        rejoin: Callable[[], Awaitable[None]],
        forget_after: float,
    ) -> None:
        self.conn = conn
        self.make_groups = make_groups
        self.rejoin = rejoin
        self.forget_after = forget_after
        self.data_losses = 0
        """Times Redis came back without the data this process had written."""
        self.epoch: bytes | None = None
        """The namespace's epoch token as this process last saw it."""
        self._run_id: str | None = None
        self._lock = asyncio.Lock()
        self._recovered_at = -float("inf")

    async def start(self) -> None:
        """Take note of the server and of the namespace's epoch (at connection)."""
        self._run_id = await self._server_run_id()
        self.epoch = await self._claim_epoch()

    async def _server_run_id(self) -> str | None:
        info = await self.conn.redis.info("server")
        run_id = info.get("run_id")
        return None if run_id is None else str(run_id)

    async def _claim_epoch(self) -> bytes:
        """The namespace's epoch token, set now if Redis has none (it is new, or lost it)."""
        pipe = self.conn.redis.pipeline(transaction=False)
        pipe.set(self.conn.keys.epoch, uuid.uuid4().hex, nx=True)
        pipe.get(self.conn.keys.epoch)
        _, epoch = await pipe.execute()
        return bytes(epoch)

    async def reconnected(self) -> None:
        """After a lost connection: join again if Redis lost its data, else say if it restarted."""
        run_id = await self._server_run_id()
        if not await self.check() and run_id != self._run_id:
            self._run_id = run_id  # (check() takes note of it when Redis lost its data)
            logger.warning(
                "Redis at %s restarted and kept its data; the shared bus goes on.",
                self.conn.where,
            )

    async def check(self) -> bool:
        """If Redis lost its data since this process last looked, join again; say whether."""
        async with self._lock:
            epoch = await self._claim_epoch()
            if epoch == self.epoch:
                return False
            self.epoch = epoch
            self._run_id = await self._server_run_id()
            self._recovered_at = time.monotonic()
            self.data_losses += 1
            logger.warning(
                "Redis at %s lost its data (it restarted without persistence, or was "
                "flushed): this process joins the shared bus again. Events other processes "
                "published before the loss and this one had not read are lost; commands "
                "this process sent that were lost fail.",
                self.conn.where,
            )
            # Everything in the events stream now is new: read it from its start.
            await self.make_groups(events_from="0")
            await self.rejoin()
            return True

    async def regroup(self) -> None:
        """A consumer group of this process was gone: find out why, and make it again."""
        if await self.check() or time.monotonic() - self._recovered_at < 10 * self.conn.heartbeat:
            await self.make_groups(events_from="0")  # made anew after the loss
            return
        logger.warning(
            "A consumer group of this process was gone (this process was silent for %g s "
            "and counted as gone, or the stream was deleted); events meanwhile were missed.",
            self.forget_after,
        )
        await self.make_groups(events_from="$")
