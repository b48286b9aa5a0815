"""A process's heartbeat on the shared bus: one round trip that keeps it seen, and leaving.

Each heartbeat renews, in one pipeline, what says this process is alive (its
heartbeat key, its reply stream's lifetime, its adverts of the command types it
handles, its announcement of the event types it handles), trims the replies it read,
and reads back what it needs of the others (their announcements, the namespace's
epoch token, the server's time for the clock's offset).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from llmgine.bus.remote.adverts import Adverts, raise_unless_busygroup
from llmgine.bus.remote.clock import ServerClock
from llmgine.bus.remote.connection import Connection
from llmgine.bus.remote.listeners import Listeners

__all__ = ["Heartbeat"]


class Heartbeat:
    """The round trip that keeps this process seen, and those that take it back.

    Args:
        conn: The connection to the shared bus.
        clock: The Redis server's clock (measured again on a quick round trip).
        adverts: This process's adverts of its command types.
        listeners: This process's announcement of its event types, and the others'.
        trim_replies: Adds the trimming of the replies read so far to a pipeline.
        forget_after: Seconds without a heartbeat after which this process counts as gone.
        closing: Set once this process leaves: a beat then takes back what it renewed.
    """

    def __init__(
        self,
        conn: Connection,
        clock: ServerClock,
        adverts: Adverts,
        listeners: Listeners,
        trim_replies: Callable[[Any], None],
        forget_after: float,
        closing: threading.Event,
    ) -> None:
        self.conn = conn
        self.clock = clock
        self.adverts = adverts
        self.listeners = listeners
        self.trim_replies = trim_replies
        self.forget_after = forget_after
        self.closing = closing

    async def beat(self) -> bytes | None:
        """Say which types this process handles, until its heartbeat stops.

        Also reads the other processes' announcements and the epoch token (returned).
        """
        conn, keys = self.conn, self.conn.keys
        ttl = conn.heartbeat * 3
        # On the Redis server's clock, as every process reads them: a process whose own
        # clock is off is neither invisible (slow) nor kept "present" once dead (fast).
        expiry = self.clock.now_ms() / 1000 + ttl
        pipe = conn.redis.pipeline(transaction=False)
        pipe.time()
        pipe.set(keys.process(conn.process_id), b"1", px=int(self.forget_after * 1000))
        pipe.expire(keys.reply(conn.process_id), int(max(ttl, 60)))
        self.adverts.renew(pipe, expiry)
        self.listeners.renew(pipe)
        self.trim_replies(pipe)
        pipe.get(keys.epoch)
        pipe.hgetall(keys.listeners)
        before = time.time()
        results = await pipe.execute(raise_on_error=False)
        after = time.time()
        raise_unless_busygroup(results)
        if after - before < conn.heartbeat / 2:
            # A quick round trip: measure the clock's offset again (a clock set since).
            self.clock.set_offset(results[0], before, after)
        self.listeners.load(results[-1])
        if self.closing.is_set():
            await self.withdraw()
        epoch: bytes | None = results[-2]
        return epoch

    async def withdraw(self) -> None:
        """Take back this process's adverts and announcement (it leaves)."""
        await self.adverts.withdraw()
        await self.listeners.withdraw()

    async def forget(self) -> None:
        """Delete what this process kept in Redis: its consumer group, reply stream, heartbeat.

        The last step of leaving, once nothing runs or waits here any more.
        """
        conn, keys = self.conn, self.conn.keys
        pipe = conn.redis.pipeline(transaction=False)
        pipe.xgroup_destroy(keys.events, keys.event_group(conn.process_id))
        pipe.delete(keys.reply(conn.process_id), keys.process(conn.process_id))
        await pipe.execute(raise_on_error=False)
