"""Which event types each connected process handles, so that only those travel.

Every process announces the event types it has handlers for: in the hash
``{ns}:listeners`` (renewed at each heartbeat, with the time it holds until) and,
whenever the set changes, in a notice on the events stream, which the other processes
read in stream order. A process forwards an event to the shared bus only when another
connected process handles its type or one of its base classes; the bus's own span and
result events, which usually nobody else handles, stay local.

What a process knows of the others may lag behind:

- A process that connects announces at once; one that registers a handler for a new
  event type later announces at its next heartbeat (or before it next sends an event
  or a command). The others learn it as soon as their event loop reads the notice,
  and at the latest at their own next heartbeat (they read the hash). Events they
  publish in that window, usually far shorter than a heartbeat and two at most, do
  not reach it.
- A process that registers a handler and *then* publishes an event or executes a
  command announces first: the notice is on the stream before the event, and the
  command carries the version of its announcement (the worker reads the hash again
  when it knows an older one). So what others publish in answer reaches it.
- ``await link.wait_for_listener(EventType)`` waits until another connected process
  handles a type; ``await link.refresh()`` reads the hash at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from llmgine.bus.remote.keys import type_key
from llmgine.bus.remote.wire import notice_field

if TYPE_CHECKING:
    from llmgine.bus.ports import BusPort
    from llmgine.bus.remote.connection import Connection

__all__ = ["Announcement", "Listeners"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Announcement:
    """What one process said it handles."""

    version: int
    """Grows each time the process's set of types changes."""
    until: float
    """Wall-clock time (``time.time()``) after which the process counts as gone."""
    types: frozenset[str]
    """The event types it handles, by :func:`~llmgine.bus.remote.keys.type_key`."""

    def dump(self) -> bytes:
        """The announcement as stored in the hash and sent in notices."""
        return orjson.dumps({"v": self.version, "until": self.until, "types": sorted(self.types)})

    @staticmethod
    def load(payload: bytes | str) -> Announcement | None:
        """Read an announcement back; ``None`` when it does not decode."""
        try:
            raw = orjson.loads(payload)
            return Announcement(
                version=int(raw["v"]),
                until=float(raw["until"]),
                types=frozenset(str(t) for t in raw["types"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


class Listeners:
    """This process's announcements, and what it knows of the other processes'."""

    def __init__(self, connection: Connection, bus: BusPort, forget_after: float) -> None:
        self.conn = connection
        self.bus = bus
        self.forget_after = forget_after
        self.version = 0
        """The version of this process's latest announcement."""
        self._announced: frozenset[str] | None = None
        self._withdrawn = False
        self._lock = asyncio.Lock()
        self._others: dict[str, Announcement] = {}
        self._wanted: frozenset[str] = frozenset()
        self._decisions: dict[type, bool] = {}
        self._changed = asyncio.Event()
        self._keep_until = 0.0

    # ------------------------------------------------------------ this process

    def local_types(self) -> frozenset[str]:
        """The event types this process has handlers for."""
        rows = self.bus.registrations()
        return frozenset(type_key(r.message_type) for r in rows if r.kind == "event")

    def _mine(self, types: frozenset[str]) -> bytes:
        until = time.time() + self.forget_after
        return Announcement(self.version, until, types).dump()

    async def announce(self, *, force: bool = False) -> int:
        """Announce this process's event types if they changed (or ``force``).

        Returns the version announced, for a command to carry.
        """
        if self._withdrawn or (not force and self.local_types() == self._announced):
            return self.version  # the usual case: no round trip
        async with self._lock:
            types = self.local_types()
            if self._withdrawn or (types == self._announced and not force):
                return self.version
            if types != self._announced:
                self.version += 1
            payload = self._mine(types)
            keys = self.conn.keys
            pipe = self.conn.redis.pipeline(transaction=False)
            pipe.hset(keys.listeners, self.conn.process_id, payload)
            pipe.xadd(keys.events, {notice_field(self.conn.process_id.encode()): payload})
            await pipe.execute()
            self._announced = types
        return self.version

    def renew(self, pipe: Any) -> None:
        """Add the renewal of this process's announcement to a heartbeat's pipeline."""
        if self._announced is not None and not self._withdrawn:
            pipe.hset(self.conn.keys.listeners, self.conn.process_id, self._mine(self._announced))

    async def withdraw(self) -> None:
        """Say this process handles nothing any more (it leaves): for good."""
        async with self._lock:
            self._withdrawn = True
            self.version += 1
            payload = Announcement(self.version, 0.0, frozenset()).dump()
            keys = self.conn.keys
            pipe = self.conn.redis.pipeline(transaction=False)
            pipe.hdel(keys.listeners, self.conn.process_id)
            pipe.xadd(keys.events, {notice_field(self.conn.process_id.encode()): payload})
            await pipe.execute()
            self._announced = frozenset()

    # ------------------------------------------------------------ the others

    def wants(self, cls: type) -> bool:
        """Whether another connected process handles events of ``cls`` (cached per class)."""
        decision = self._decisions.get(cls)
        if decision is None:
            wanted = self._wanted
            decision = any(type_key(c) in wanted for c in cls.__mro__)
            self._decisions[cls] = decision
        return decision

    def known_version(self, process_id: str) -> int:
        """The version of ``process_id``'s announcement known here (0: none)."""
        known = self._others.get(process_id)
        return 0 if known is None else known.version

    def apply(self, process_id: str, payload: bytes) -> None:
        """Take in one process's announcement (from a notice or the hash)."""
        if process_id == self.conn.process_id:
            return
        announcement = Announcement.load(payload)
        if announcement is None:
            logger.warning("Skipped an announcement of %s that does not decode.", process_id)
            return
        known = self._others.get(process_id)
        if known is not None and known.version > announcement.version:
            return  # an older one, read after a newer notice
        self._others[process_id] = announcement
        self._recompute()

    def load(self, mapping: dict[bytes, bytes]) -> None:
        """Replace what is known with the hash's content (``HGETALL``)."""
        others: dict[str, Announcement] = {}
        if time.monotonic() < self._keep_until:
            others.update(self._others)  # Redis lost its data: the others announce again
        for key, payload in mapping.items():
            process_id = key.decode(errors="replace")
            announcement = Announcement.load(payload)
            if process_id == self.conn.process_id or announcement is None:
                continue
            known = self._others.get(process_id)
            if known is not None and known.version > announcement.version:
                announcement = known
            others[process_id] = announcement
        self._others = others
        self._recompute()

    async def refresh(self) -> None:
        """Read every process's announcement from Redis now."""
        self.load(await self.conn.redis.hgetall(self.conn.keys.listeners))

    async def refresh_one(self, process_id: str) -> None:
        """Read one process's announcement from Redis now."""
        payload = await self.conn.redis.hget(self.conn.keys.listeners, process_id)
        if payload is not None:
            self.apply(process_id, payload)

    async def after_data_loss(self) -> None:
        """Announce again, and keep what was known until the others have too."""
        self._keep_until = time.monotonic() + 3 * self.conn.heartbeat
        await self.announce(force=True)

    async def wait_for(self, event_type: type, *, handled: bool = True) -> None:
        """Return once another connected process handles ``event_type`` (or none does)."""
        while self.wants(event_type) is not handled:
            await self._changed.wait()

    def _recompute(self) -> None:
        now = time.time()
        wanted = frozenset(t for a in self._others.values() if a.until > now for t in a.types)
        if wanted != self._wanted:
            self._wanted = wanted
            self._decisions = {}
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()
