"""Which process runs which command type: this process's adverts, and the others' looked up.

A process that handles a command type advertises it in the sorted set
``{ns}:handlers:{type}``, scored by the expiry of the advert on the Redis server's
clock (three heartbeats of the process that wrote it), renewed at each heartbeat
(:mod:`~llmgine.bus.remote.heartbeat`) and withdrawn when it leaves. It also makes the
consumer group ``workers`` on the type's stream, so that no command sent before its
first read is missed. A caller looks the adverts up before it sends a command.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from llmgine.bus.remote.clock import ServerClock
from llmgine.bus.remote.connection import Connection
from llmgine.bus.remote.keys import WORKERS, type_key

if TYPE_CHECKING:
    from llmgine.bus.ports import BusPort
    from llmgine.messages.commands import Command

__all__ = ["Adverts"]


class Adverts:
    """This process's adverts of the command types it handles, and the look-up of others'.

    Args:
        conn: The connection to the shared bus.
        port: The local bus (its registrations say what is handled here).
        clock: The Redis server's clock (adverts expire on it).
        forget_after: Seconds without a heartbeat after which a process counts as gone.
    """

    def __init__(
        self, conn: Connection, port: BusPort, clock: ServerClock, forget_after: float
    ) -> None:
        self.conn = conn
        self.port = port
        self.clock = clock
        self.forget_after = forget_after
        self._found: dict[str, float] = {}
        """When a look-up that found an advert stops counting, by command type."""
        self._left: dict[str, float] = {}
        """The longest time left on an advert seen, by command type (see lifetime)."""

    def local_command_types(self) -> dict[str, type[Command]]:
        """The command types this process has handlers for, by their shared name."""
        rows = self.port.registrations()
        return {
            type_key(r.message_type): r.message_type  # type: ignore[misc]
            for r in rows
            if r.kind == "command"
        }

    async def ensure_groups(self, *, events_from: str) -> None:
        """Make this process's consumer groups (the events stream's, the commands' streams')."""
        keys, process_id = self.conn.keys, self.conn.process_id
        pipe = self.conn.redis.pipeline(transaction=False)
        pipe.xgroup_create(keys.events, keys.event_group(process_id), id=events_from, mkstream=True)
        for key in self.local_command_types():
            pipe.xgroup_create(keys.command(key), WORKERS, id="0", mkstream=True)
        raise_unless_busygroup(await pipe.execute(raise_on_error=False))

    async def ensure_command_groups(self, streams: list[str]) -> None:
        """Make the ``workers`` group of command streams (a handler registered since connecting)."""
        pipe = self.conn.redis.pipeline(transaction=False)
        for stream in streams:
            pipe.xgroup_create(stream, WORKERS, id="0", mkstream=True)
        raise_unless_busygroup(await pipe.execute(raise_on_error=False))

    def renew(self, pipe: Any, expiry: float) -> None:
        """Add the renewal of this process's adverts, until ``expiry``, to a pipeline."""
        keys, process_id = self.conn.keys, self.conn.process_id
        for key in self.local_command_types():
            pipe.xgroup_create(keys.command(key), WORKERS, id="0", mkstream=True)
            pipe.zadd(keys.handlers(key), {process_id: expiry})

    async def withdraw(self) -> None:
        """Take this process's adverts back (it leaves)."""
        pipe = self.conn.redis.pipeline(transaction=False)
        for key in self.local_command_types():
            pipe.zrem(self.conn.keys.handlers(key), self.conn.process_id)
        await pipe.execute()

    async def handled_elsewhere(self, command_type: type[Command], *, fresh: bool = False) -> bool:
        """Whether a connected process advertises a handler for ``command_type``.

        A look-up that found one counts for a heartbeat, unless ``fresh``.
        """
        key = type_key(command_type)
        if not fresh and self._found.get(key, 0.0) > time.monotonic():
            return True
        now = self.clock.now_ms() / 1000  # adverts expire on the Redis server's clock
        found = await self.conn.redis.zrevrangebyscore(
            self.conn.keys.handlers(key), "+inf", now, 0, 1, withscores=True
        )
        if found:
            self._found[key] = time.monotonic() + self.conn.heartbeat
            # At least two of the advertising process's heartbeats: how long it may take
            # to advertise again after a stall.
            left = min(float(found[0][1]) - now, self.forget_after)
            self._left[key] = max(self._left.get(key, 0.0), left)
            return True
        self._found.pop(key, None)
        return False

    def lifetime(self, command_type: type[Command]) -> float:
        """The longest time left on an advert for ``command_type`` seen so far, in seconds.

        Adverts last three heartbeats of the process that wrote them: this tells a
        caller how long a live worker may take to advertise again (0: never seen).
        """
        return self._left.get(type_key(command_type), 0.0)


def raise_unless_busygroup(results: list[Any]) -> None:
    """Raise the first error of a pipeline's ``results``, but "the group exists already"."""
    for result in results:
        if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
            raise result
