"""Schedules: a message published or executed later (``bus.schedule``).

A schedule made while the bus is not connected lives in this process: it fires
while the process runs, and one still pending at ``stop()`` is lost (a warning and
a ``ScheduleLostEvent`` say so). Made while connected to Redis, it lives there: a
sorted set of due times and one hash per schedule, under the namespace. Every
connected process polls for due schedules and takes them in one Lua script, so a
schedule fires exactly once in the namespace, and it survives the process that made
it (any other connected process fires it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from llmgine.bus.surface import BusSurface
from llmgine.bus.typepath import class_at, type_path
from llmgine.errors import ConfigurationError
from llmgine.messages.base import Message
from llmgine.messages.commands import Command
from llmgine.messages.events import Event
from llmgine.observability.codec import encode

__all__ = ["ScheduleFiredEvent", "ScheduleLostEvent", "Scheduled", "Scheduler"]

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.1
"""Seconds between a connected process's looks for due schedules."""

MAX_POLL_PAUSE = 5.0
"""Seconds between looks, at most, while Redis does not answer."""

STOP_TIMEOUT = 5.0
"""Seconds a leaving bus waits for a look for due schedules under way to end."""

MAX_AFTER = 366 * 24 * 3600.0
"""The longest ``after=`` (seconds); a later time goes as ``at=``."""

KEEP_AFTER_DUE = 7 * 24 * 3600
"""Seconds a shared schedule's data outlives its due time if no process fires it."""

# KEYS[1]: the due-time set; ARGV[1]: the key prefix of the schedules' hashes; ARGV[2]:
# how many at most. Takes the due schedules (on Redis's clock) and returns id, type,
# kind and envelope of each: taken and read in one step, so exactly one process gets it.
_TAKE_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local key = ARGV[1] .. id
  local data = redis.call('HMGET', key, 't', 'k', 'm')
  redis.call('DEL', key)
  if data[1] then
    table.insert(out, id); table.insert(out, data[1]); table.insert(out, data[2])
    table.insert(out, data[3])
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A message waiting for its time."""

    id: str
    message: Message
    due: datetime
    shared: bool
    """Kept in the shared bus's Redis (fires in whichever process takes it first)."""


class ScheduleFiredEvent(Event):
    """A schedule's time came: its message was published, or its command executed."""

    schedule_id: str
    message_type: str
    message_id: uuid.UUID
    kind: Literal["command", "event"]
    success: bool | None = None
    """For a command: whether it succeeded (its result is also the usual result event)."""
    error: str | None = None
    late_ms: float = 0.0
    """How long after its due time it fired."""


class ScheduleLostEvent(Event):
    """A schedule of this process was still pending when the bus stopped: it will not fire."""

    schedule_id: str
    message_type: str
    due: datetime


class Scheduler:
    """The schedules of one bus (see the module)."""

    def __init__(self, bus: BusSurface) -> None:
        self.bus = bus
        self._local: dict[str, tuple[Scheduled, asyncio.Task[None]]] = {}
        self._shared: dict[str, Scheduled] = {}
        self._poller: asyncio.Task[None] | None = None
        self._leaving: asyncio.Event | None = None
        self.pause = POLL_INTERVAL
        """Seconds until the next look for due schedules (longer while Redis is down)."""
        self._firing: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> list[Scheduled]:
        """This process's schedules not yet fired, soonest first."""
        found = [item for item, _ in self._local.values()] + list(self._shared.values())
        return sorted(found, key=lambda item: item.due)

    async def schedule(
        self, message: Message, *, after: float | None = None, at: datetime | None = None
    ) -> str:
        """Publish (an event) or execute (a command) ``message`` later; return the schedule's id.

        Raises:
            ConfigurationError: Neither or both of ``after`` and ``at``, a negative
                ``after``, a naive ``at``, or a message that is neither a command nor
                an event.
        """
        due = _due(after, at)
        if not isinstance(message, Command | Event):
            raise ConfigurationError(
                f"bus.schedule takes a Command or an Event; got {type(message).__name__}."
            )
        item = Scheduled(uuid.uuid4().hex, message, due, shared=self.bus.remote is not None)
        if item.shared:
            await self._store(item)
            self._shared[item.id] = item
            self.connected()
        else:
            task = asyncio.ensure_future(self._fire_later(item))
            self._local[item.id] = (item, task)
        return item.id

    async def cancel(self, schedule_id: str) -> bool:
        """Cancel a schedule (here, or in the shared bus); return whether it was pending."""
        local = self._local.pop(schedule_id, None)
        if local is not None:
            local[1].cancel()
            return True
        self._shared.pop(schedule_id, None)
        remote = self.bus.remote
        if remote is None:
            return False
        redis, due_set, prefix = _where(remote)
        removed = await redis.zrem(due_set, schedule_id)
        await redis.delete(prefix + schedule_id)
        return bool(removed)

    def connected(self) -> None:
        """Start looking for the shared bus's due schedules (the bus has connected)."""
        if self._poller is None or self._poller.done():
            self._leaving = asyncio.Event()
            self._poller = asyncio.ensure_future(self._poll(self._leaving))

    async def disconnected(self) -> None:
        """Stop looking for due schedules (the bus is leaving the shared bus).

        The look under way ends first: a Redis call cancelled halfway would leave
        its connection unusable for the link's own close.
        """
        poller, self._poller = self._poller, None
        if poller is not None and self._leaving is not None:
            self._leaving.set()
            try:
                await asyncio.wait_for(asyncio.shield(poller), STOP_TIMEOUT)
            except TimeoutError:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
        self._shared.clear()  # they stay in Redis, for the other processes

    async def stop(self) -> None:
        """The bus stops: this process's pending schedules are lost, and said to be."""
        await self.disconnected()
        for item, task in list(self._local.values()):
            task.cancel()
            logger.warning(
                "Schedule %s (%s, due %s) was still pending when the bus stopped: it will not "
                "fire. Connect the bus to Redis for schedules that outlive the process.",
                item.id,
                type(item.message).__name__,
                item.due.isoformat(),
            )
            await self.bus.publish(
                ScheduleLostEvent(
                    schedule_id=item.id, message_type=type(item.message).__name__, due=item.due
                )
            )
        self._local.clear()
        for task in list(self._firing):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _fire_later(self, item: Scheduled) -> None:
        await asyncio.sleep(max((item.due - datetime.now(UTC)).total_seconds(), 0.0))
        self._local.pop(item.id, None)
        await self._fire(item.id, item.message, item.due)

    async def _fire(self, schedule_id: str, message: Message, due: datetime | None) -> None:
        late = (datetime.now(UTC) - due).total_seconds() * 1000.0 if due is not None else 0.0
        fired = {
            "schedule_id": schedule_id,
            "message_type": type(message).__name__,
            "message_id": message.id,
            "late_ms": max(late, 0.0),
        }
        if isinstance(message, Command):
            result = await self.bus.execute(message)
            event = ScheduleFiredEvent(
                kind="command", success=result.success, error=result.error, **fired
            )
        else:
            await self.bus.publish(message)  # type: ignore[arg-type]  # an Event
            event = ScheduleFiredEvent(kind="event", **fired)
        await self.bus.publish(event)

    async def _store(self, item: Scheduled) -> None:
        redis, due_set, prefix = _where(self.bus.remote)
        kind: Literal["command", "event"] = (
            "command" if isinstance(item.message, Command) else "event"
        )
        line = encode(kind, item.message, None)
        due_ms = int(item.due.timestamp() * 1000)
        key = prefix + item.id
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "t": type_path(type(item.message)),
                    "k": kind,
                    "m": line,
                },
            )
            pipe.expireat(key, int(item.due.timestamp()) + KEEP_AFTER_DUE)
            pipe.zadd(due_set, {item.id: due_ms})
            await pipe.execute()

    async def _poll(self, leaving: asyncio.Event) -> None:
        self.pause = pause = POLL_INTERVAL
        while not leaving.is_set():
            try:
                await self._take_due()
            except Exception as exc:
                if pause == POLL_INTERVAL:  # once per outage; the link says more of it
                    logger.warning(
                        "Looking for due schedules in Redis failed (%s: %s); trying again, "
                        "less often until it answers.",
                        type(exc).__name__,
                        exc,
                    )
                pause = min(pause * 2, MAX_POLL_PAUSE)
            else:
                pause = POLL_INTERVAL
            self.pause = pause
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leaving.wait(), pause)

    async def _take_due(self) -> None:
        remote = self.bus.remote
        if remote is None:
            return
        redis, due_set, prefix = _where(remote)
        reply: list[bytes] = await redis.eval(_TAKE_DUE, 1, due_set, prefix, 20)
        if self._shared:  # ours that another process fired or cancelled: no longer pending
            ids = list(self._shared)
            scores = await redis.zmscore(due_set, ids)
            for schedule_id, score in zip(ids, scores, strict=True):
                if score is None:
                    self._shared.pop(schedule_id, None)
        for n in range(0, len(reply), 4):
            schedule_id = reply[n].decode()
            self._shared.pop(schedule_id, None)
            try:
                message = _load(reply[n + 1].decode(), reply[n + 2].decode(), reply[n + 3])
            except Exception:
                logger.exception("Schedule %s cannot be read here; it is dropped.", schedule_id)
                continue
            task = asyncio.ensure_future(self._fire(schedule_id, message, None))
            self._firing.add(task)
            task.add_done_callback(self._firing.discard)


def _due(after: float | None, at: datetime | None) -> datetime:
    if (after is None) == (at is None):
        raise ConfigurationError("bus.schedule needs after=seconds or at=datetime (one of them).")
    if after is not None:
        if isinstance(after, bool) or not isinstance(after, int | float):
            raise ConfigurationError(f"bus.schedule(after=...) takes seconds; got {after!r}.")
        if not 0 <= after <= MAX_AFTER:
            raise ConfigurationError(
                f"bus.schedule(after=...) must be 0 to {MAX_AFTER:.0f} seconds (a year); "
                f"got {after}."
            )
        return datetime.now(UTC) + timedelta(seconds=after)
    if not isinstance(at, datetime):
        raise ConfigurationError(f"bus.schedule(at=...) takes a datetime; got {at!r}.")
    if at.tzinfo is None:
        raise ConfigurationError(
            "bus.schedule(at=...) needs a timezone-aware datetime, e.g. "
            "datetime(2026, 1, 1, 9, tzinfo=ZoneInfo('Europe/Paris')) or datetime.now(UTC)."
        )
    return at.astimezone(UTC)


def _where(remote: Any) -> tuple[Any, str, str]:
    namespace = remote.connection.keys.namespace
    return remote.connection.redis, f"{namespace}:schedules", f"{namespace}:schedule:"


def _load(path: str, kind: str, line: bytes) -> Message:
    from llmgine.bus.remote.wire import load_message  # only with the bus connected

    base: type[Message] = Command if kind == "command" else Event
    message, _ = load_message(class_at(path, base), line)
    return message
