"""Events across processes: the sending side and the receiving side of the events stream.

Sending: the bus hands the link every event it accepts (``forward``, under the bus's
lock, never waiting). Those that another connected process handles (see
:mod:`llmgine.bus.remote.listeners`) go to a local buffer; a sender task adds them to
the events stream in batches, one script call per batch (one round trip, one reply),
after announcing this process's handlers if they changed (so a notice always precedes
the events it concerns). When this process's own consumer group had read the stream
to its end, the script moves the group past the batch: a process does not read its
own events back (when it must, it skips them by their field name).

While Redis is unreachable the buffer holds up to ``max_buffer`` events; past that the
oldest are dropped, counted in ``dropped``, and reported: an error when the
dropping starts, a warning with the count once Redis takes events again.

Receiving: each process reads the stream through its own consumer group, skips its
own entries, takes in the other processes' notices, and hands its local handlers the
events they handle, in stream order. An entry names its sender and its event's type in
its field name (:mod:`llmgine.bus.remote.wire`), so an event this process has no
handler for is skipped without decoding (counted in ``skipped``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from llmgine.bus.remote.connection import Connection
from llmgine.bus.remote.keys import type_key
from llmgine.bus.remote.listeners import Listeners
from llmgine.bus.remote.tasks import raise_if_cancelled
from llmgine.bus.remote.wire import entry_order, event_field, load_message, notice_field
from llmgine.errors import LogFormatError
from llmgine.messages.events import Event
from llmgine.observability.codec import decode
from llmgine.observability.events import SpanContext
from llmgine.observability.sinks import Record

if TYPE_CHECKING:
    from llmgine.bus.ports import BusPort

__all__ = ["EventChannel"]

logger = logging.getLogger(__name__)

BATCH = 1000
"""Events per send at most, and per read."""

BATCH_BYTES = 4 << 20
"""Bytes of envelopes per send at most (a single larger event goes alone)."""

# KEYS: the events stream, this process's sent key. ARGV: this process's group, the
# batch's number, then field, value, field, value...
SEND = """
local done = redis.call('HMGET', KEYS[2], 'batch', 'id')
if done[1] and tonumber(done[1]) >= tonumber(ARGV[2]) then return done[2] end
local last_generated
local info = redis.pcall('XINFO', 'STREAM', KEYS[1])
if not info['err'] then
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last_generated = info[i + 1] end
  end
end
local caught_up = false
if last_generated then
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local name, delivered
    for i = 1, #group, 2 do
      if group[i] == 'name' then name = group[i + 1] end
      if group[i] == 'last-delivered-id' then delivered = group[i + 1] end
    end
    if name == ARGV[1] then caught_up = delivered == last_generated end
  end
end
local id
for i = 3, #ARGV, 2 do id = redis.call('XADD', KEYS[1], '*', ARGV[i], ARGV[i + 1]) end
if caught_up and id then redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], id) end
redis.call('HSET', KEYS[2], 'batch', ARGV[2], 'id', id)
redis.call('EXPIRE', KEYS[2], 86400)
return id
"""
"""Add a batch of entries in one round trip and return the last one's id; when this
process's group had read the stream to its end, move the group past the batch, so that
this process does not read its own events back (it skips them when it must read them).
A batch whose number was added already (its reply was lost, and it is sent again) is
not added twice: events reach every process exactly once."""


class EventChannel:
    """Sends this process's events to the shared bus and delivers the others' here.

    Args:
        conn: The connection to the shared bus.
        port: The local bus: what it handles, and where received events go.
        listeners: Who handles what: an event travels only if another process does.
        regroup: Makes this process's consumer group again when it is found gone.
        max_buffer: Events kept while Redis is unreachable (the oldest dropped past it).
    """

    def __init__(
        self,
        conn: Connection,
        port: BusPort,
        listeners: Listeners,
        regroup: Callable[[], Awaitable[None]],
        max_buffer: int,
    ) -> None:
        self.conn = conn
        self.port = port
        self.listeners = listeners
        self.regroup = regroup
        self.max_buffer = max_buffer
        self.sent = 0
        self.received = 0
        self.skipped = 0
        self.dropped = 0
        self._dropping = 0
        self._buffer: deque[Record] = deque()
        self._wake = asyncio.Event()
        self._emptied: list[asyncio.Future[None]] = []
        self._in_flight = 0
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._fields: dict[type, bytes] = {}
        self._classes: dict[bytes, type[Event]] = {}
        self._warned_foreign = False
        self._send = conn.redis.register_script(SEND)
        self._pending: tuple[int, list[Record], list[Any]] | None = None
        self._batches = 0
        self.last_sent: bytes | None = None
        """The id of the last event this process added to the stream."""
        self._read_upto = (0, 0)
        self._readers: list[tuple[tuple[int, int], asyncio.Future[None]]] = []

    @property
    def buffered(self) -> int:
        """Events accepted here and waiting to be sent to Redis."""
        return len(self._buffer) + (len(self._pending[1]) if self._pending else 0)

    # ------------------------------------------------------------ sending

    def forward(self, record: Record) -> None:
        """Buffer an event for the shared bus if another process handles it (never waits)."""
        if not self.listeners.wants(type(record.message)):
            return
        buffer = self._buffer
        if len(buffer) >= self.max_buffer:
            buffer.popleft()
            self.dropped += 1
            self._dropping += 1
            if self._dropping == 1:
                logger.error(
                    "Redis at %s is unreachable and the shared bus's buffer of %d events is "
                    "full: the oldest events are dropped from now on (they stay in this "
                    "process's log; link.dropped counts them).",
                    self.conn.where,
                    self.max_buffer,
                )
        buffer.append(record)
        if threading.get_ident() == self._thread:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _field(self, cls: type) -> bytes:
        name = self._fields.get(cls)
        if name is None:
            origin = self.conn.process_id.encode()
            name = self._fields[cls] = event_field(origin, type_key(cls).encode())
        return name

    async def send_loop(self) -> None:
        """Send what is buffered, in batches, for as long as the link runs."""
        conn = self.conn
        buffer = self._buffer
        stream = conn.keys.events
        group = conn.keys.event_group(conn.process_id)
        sent_key = conn.keys.sent(conn.process_id)
        while True:
            raise_if_cancelled()
            if self._pending is None:
                if not buffer:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self._pending = self._next_batch()
            await self.listeners.announce()  # a new handler here: its notice goes first
            # A batch that failed is sent again as it was, under its number: if it did
            # reach Redis (only the reply was lost), the script does not add it twice.
            number, batch, args = self._pending
            self._in_flight = len(batch)
            try:
                last = await self._send([stream, sent_key], [group, number, *args])
            finally:
                self._in_flight = 0
            self._pending = None
            self.sent += len(batch)
            self.last_sent = last
            if self._dropping:
                logger.warning(
                    "Redis at %s takes events again: %d events were dropped while it did not "
                    "(%d in all since connecting).",
                    conn.where,
                    self._dropping,
                    self.dropped,
                )
                self._dropping = 0
            if not buffer:
                emptied, self._emptied = self._emptied, []
                for waiter in emptied:
                    if not waiter.done():
                        waiter.set_result(None)

    def _next_batch(self) -> tuple[int, list[Record], list[Any]]:
        """Take the next batch out of the buffer (an overflow then drops only what waits)."""
        buffer = self._buffer
        batch: list[Record] = []
        args: list[Any] = []
        size = 0
        while buffer and len(batch) < BATCH:
            record = buffer.popleft()
            line = record.line
            if size and size + len(line) > BATCH_BYTES:
                buffer.appendleft(record)
                break
            batch.append(record)
            size += len(line)
            args += (self._field(type(record.message)), line)
        self._batches += 1
        return self._batches, batch, args

    async def sent_all(self) -> None:
        """Return once everything accepted so far is sent (none waits, none in flight)."""
        while self._buffer or self._in_flight or self._pending:
            waiter = self._loop.create_future()
            self._emptied.append(waiter)
            self._wake.set()
            await waiter

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until the events buffered here are sent to Redis; say whether they are.

        Args:
            timeout: Seconds to wait at most (``None``: as long as it takes, so as long
                as Redis is unreachable).
        """
        try:
            await asyncio.wait_for(self.sent_all(), timeout)
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------ receiving

    async def receive_loop(self) -> None:
        """Read the events stream through this process's group, for as long as the link runs."""
        conn = self.conn
        group = conn.keys.event_group(conn.process_id)
        stream = conn.keys.events
        mine = event_field(conn.process_id.encode(), b"")
        my_notice = notice_field(conn.process_id.encode())
        port = self.port
        listeners = self.listeners
        block = int(conn.heartbeat * 1000)
        while True:
            raise_if_cancelled()
            try:
                answer = await conn.blocking.xreadgroup(
                    group, "c", {stream: ">"}, count=BATCH, block=block
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.regroup()
                continue
            if not answer:
                continue
            ids = []
            for entry_id, fields in answer[0][1]:
                ids.append(entry_id)
                for name, value in (fields or {}).items():  # one pair per entry
                    if name.startswith(mine) or name == my_notice:
                        continue
                    if name.startswith(b"n "):
                        listeners.apply(name[2:].decode(errors="replace"), value)
                        continue
                    if not name.startswith(b"e "):
                        self._foreign(name)
                        continue
                    item = self._take(name.rpartition(b" ")[2], value)
                    if item is None:
                        continue
                    await port.deliver(*item)
                    self.received += 1
            await conn.blocking.xack(stream, group, *ids)
            self._passed(ids[-1])

    def _passed(self, entry_id: bytes) -> None:
        """Everything up to ``entry_id`` is read and queued here: wake who waited for it."""
        self._read_upto = entry_order(entry_id)
        if self._readers:
            waiting = []
            for target, future in self._readers:
                if target <= self._read_upto:
                    if not future.done():
                        future.set_result(None)
                else:
                    waiting.append((target, future))
            self._readers = waiting

    async def read_past(self, entry_id: bytes | str) -> None:
        """Return once this process has read (and queued for its handlers) ``entry_id``.

        A caller waits for this before ``execute()`` returns, so that the events the
        remote handler published are here first. Bound it with ``asyncio.wait_for``.
        """
        target = entry_order(entry_id)
        if target <= self._read_upto:
            return
        future = self._loop.create_future()
        self._readers.append((target, future))
        await future

    def _foreign(self, name: bytes) -> None:
        """An entry this version does not write: say so once, and skip it."""
        self.skipped += 1
        if not self._warned_foreign:
            self._warned_foreign = True
            logger.warning(
                "Skipped an entry of the shared bus's events stream with a field named %r: "
                "a process runs another version of llmgine (every process of a shared bus "
                "needs the same one).",
                name[:40],
            )

    def _take(self, key: bytes, line: bytes) -> tuple[Event, SpanContext | None] | None:
        """The event of an entry, if this process handles its type; decoded only then."""
        cls = self._classes.get(key) or self._resolve(key)
        if cls is None:
            return self._take_unknown(line)
        if not self.port.handles_event(cls):
            self.skipped += 1
            return None
        try:
            return load_message(cls, line)
        except ValueError as exc:
            logger.warning(
                "Skipped an event from the shared bus that does not decode into %s: %s",
                cls.__qualname__,
                exc,
            )
            return None

    def _take_unknown(self, line: bytes) -> tuple[Event, SpanContext | None] | None:
        """An entry whose class is not imported here: the codec finds it if it can."""
        try:
            envelope = decode(line)
            cls = envelope.message_class()
            if cls is None or not issubclass(cls, Event):
                return None
            if not self.port.handles_event(cls):
                self.skipped += 1
                return None
            event = envelope.to_message()
        except LogFormatError as exc:
            logger.warning("Skipped an event from the shared bus that does not decode: %s", exc)
            return None
        assert isinstance(event, Event)
        return event, envelope.span_context()

    def _resolve(self, key: bytes) -> type[Event] | None:
        """The class a type key names, among the modules imported here (cached when found)."""
        name = key.decode(errors="replace")
        parts = name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            module = sys.modules.get(".".join(parts[:cut]))
            if module is None:
                continue
            found: Any = module
            for attribute in parts[cut:]:
                found = getattr(found, attribute, None)
            if isinstance(found, type) and issubclass(found, Event) and type_key(found) == name:
                self._classes[key] = found
                return found
        return None
