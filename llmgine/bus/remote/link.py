"""A bus's link to a shared bus on Redis Streams: what ``bus.connect(url)`` starts.

Who logs what (so that the logs of several processes, read together, hold every
message once):

- an event is logged by the process that published it; a process that receives
  it from Redis runs its handlers but does not log it again;
- a command executed remotely is logged by the caller (the command line, the
  caller's span, the ``CommandResultEvent`` or ``CommandErrorEvent``, whose
  ``metadata`` names the worker and carries its traceback);
- the worker logs the span of its handler (a child of the caller's span) and
  everything the handler publishes.

Delivery: events go to one stream; each connected process reads it through its own
consumer group and delivers to its local handlers those it has handlers for, in
stream order (so in publish order per publisher), skipping its own. Commands go to
a stream per type read by the group ``workers``: exactly one process takes each.
Locally published events are forwarded by a sender task from a local buffer, so
``publish()`` never waits on the network and nothing is sent under the bus's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from itertools import islice
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from llmgine.bus.registry import HandlerEntry
from llmgine.bus.remote.commands import CommandRunner, RemoteCaller, raise_if_cancelled
from llmgine.bus.remote.keys import WORKERS, Keys, redact, type_key
from llmgine.errors import LogFormatError
from llmgine.messages.events import Event
from llmgine.observability.codec import decode
from llmgine.observability.sinks import Record

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus
    from llmgine.messages.commands import Command

__all__ = ["RedisLink"]

logger = logging.getLogger(__name__)

NETWORK_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class RedisLink:
    """Joins a :class:`~llmgine.bus.MessageBus` to a shared bus made of Redis Streams.

    Made by ``await bus.connect(url, namespace=..., **options)``; the options are the
    keyword arguments below.

    Args:
        bus: The local bus.
        url: The Redis URL, e.g. ``redis://127.0.0.1:6379/0``.
        namespace: Prefix of every key; buses in one namespace form one shared bus.
        heartbeat: Seconds between heartbeats (handler advertisements, claims, trims).
        claim_after: Seconds a command may sit with a dead worker before another takes
            it over (a live worker renews its claim on a running command).
        max_concurrency: Remote commands this process runs at once.
        max_buffer: Events kept locally while Redis is unreachable; past that the
            oldest are dropped and counted (``dropped``), with an error logged.
        forget_after: Seconds without a heartbeat after which a process counts as gone
            and its consumer group on the events stream is removed (so that trimming
            goes on). Long, because a notebook's loop may be busy in a long cell.
    """

    def __init__(
        self,
        bus: MessageBus,
        url: str,
        namespace: str = "llmgine",
        *,
        heartbeat: float = 1.0,
        claim_after: float = 15.0,
        max_concurrency: int = 8,
        max_buffer: int = 100_000,
        forget_after: float = 300.0,
    ) -> None:
        if heartbeat <= 0 or claim_after <= 0 or max_concurrency < 1:
            raise ValueError("heartbeat and claim_after must be positive, max_concurrency >= 1.")
        self.bus = bus
        self.url = url
        self.keys = Keys(namespace)
        self.heartbeat = heartbeat
        self.claim_after = claim_after
        self.max_buffer = max_buffer
        self.forget_after = forget_after
        self.process_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # Any: redis-py types each reply as a union of its RESP2 and RESP3 shapes; this
        # link speaks RESP2 (the default) and reads the RESP2 shapes.
        self.redis: Any = aioredis.Redis.from_url(url, socket_timeout=30)
        # The blocking reads have connections of their own: cancelling one at close
        # never leaves a half-read reply on a connection the senders use.
        self.blocking: Any = aioredis.Redis.from_url(url, socket_timeout=30)
        self.sent = 0
        """Events sent to Redis."""
        self.received = 0
        """Events from other processes delivered to local handlers."""
        self.dropped = 0
        """Events dropped because the local buffer overflowed while Redis was unreachable."""
        self._buffer: deque[Record] = deque()
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._down_since: float | None = None
        self._handlers_cache: dict[str, float] = {}
        self.caller = RemoteCaller(self)
        self.runner = CommandRunner(self, max_concurrency)

    def __repr__(self) -> str:
        return f"<RedisLink {redact(self.url)} namespace={self.keys.namespace!r}>"

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Connect, join the shared bus and start the link's tasks.

        Raises:
            ConnectionError: Redis cannot be reached at the URL.
        """
        try:
            await self.redis.ping()
            await self._ensure_groups()
            await self._advertise()
        except NETWORK_ERRORS as exc:
            await self.redis.aclose()
            await self.blocking.aclose()
            raise ConnectionError(
                f"Cannot reach Redis at {redact(self.url)} ({type(exc).__name__}: {exc}); "
                "is the server running? (RedisServer() starts a local one.)"
            ) from exc
        for name, body in (
            ("sender", self._send_loop),
            ("events", self._event_loop),
            ("commands", self.runner.read_loop),
            ("replies", self.caller.reply_loop),
            ("heartbeat", self._heartbeat_loop),
        ):
            self._spawn(name, body)
        logger.info("Connected to the shared bus at %s as %s.", redact(self.url), self.process_id)

    def _spawn(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await self._resilient(name, body)

        task = self._loop.create_task(
            run(), name=f"llmgine-redis-{name}", context=contextvars.Context()
        )
        self._tasks.append(task)

    async def close(self) -> None:
        """Stop taking work, finish what runs, send what is buffered, and leave.

        Commands this process runs are finished and answered; events buffered for
        Redis are sent (if Redis does not come back within ``claim_after`` seconds,
        the number of unsent events is logged as an error).
        """
        self._closing = True
        intake = [t for t in self._tasks if t.get_name().endswith(("events", "commands"))]
        await _cancel(intake)
        with contextlib.suppress(*NETWORK_ERRORS):
            await self._withdraw()
        await self.runner.drain()
        await self.bus._transport.join()  # events handled: what they publish is buffered
        deadline = time.monotonic() + self.claim_after
        while self._buffer and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.01)
        if self._buffer:
            logger.error(
                "Redis at %s stayed unreachable: %d events were not sent to the shared bus.",
                redact(self.url),
                len(self._buffer),
            )
        await _cancel(self._tasks)
        self.caller.fail_waiting("the bus disconnected from Redis before the result came")
        with contextlib.suppress(*NETWORK_ERRORS):
            pipe = self.redis.pipeline(transaction=False)
            pipe.xgroup_destroy(self.keys.events, self.keys.event_group(self.process_id))
            pipe.delete(self.keys.reply(self.process_id), self.keys.process(self.process_id))
            await pipe.execute(raise_on_error=False)
        await self.redis.aclose()
        await self.blocking.aclose()
        logger.info("Disconnected from the shared bus at %s.", redact(self.url))

    async def _resilient(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run a loop of the link; on a network error log it, back off and run it again."""
        delay = 0.05
        task = asyncio.current_task()
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except NETWORK_ERRORS as exc:
                if task is not None and task.cancelling():
                    # redis-py may turn a cancelled read into a connection error.
                    raise asyncio.CancelledError from exc
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    logger.warning(
                        "Lost the connection to Redis at %s (%s: %s); reconnecting with backoff.",
                        redact(self.url),
                        type(exc).__name__,
                        exc,
                    )
            except Exception:
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None
                logger.exception("The shared bus's %s loop failed; it starts again.", name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            if await self._reconnected():
                delay = 0.05

    async def _reconnected(self) -> bool:
        try:
            await self.redis.ping()
            if self._down_since is not None:
                await self._ensure_groups()
                await self._advertise()
        except NETWORK_ERRORS:
            return False
        if self._down_since is not None:
            logger.warning(
                "Reconnected to Redis at %s after %.1f s.",
                redact(self.url),
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        return True

    # ------------------------------------------------------------ directory

    def local_command_types(self) -> dict[str, type[Command]]:
        """The command types this process has handlers for, by their shared name."""
        rows = self.bus.registrations()
        return {
            type_key(r.message_type): r.message_type  # type: ignore[misc]
            for r in rows
            if r.kind == "command"
        }

    async def _ensure_groups(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xgroup_create(
            self.keys.events, self.keys.event_group(self.process_id), id="$", mkstream=True
        )
        for key in self.local_command_types():
            pipe.xgroup_create(self.keys.command(key), WORKERS, id="0", mkstream=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
                raise result

    async def _advertise(self) -> None:
        """Say which command types this process handles, until its heartbeat stops."""
        ttl = self.heartbeat * 3
        expiry = time.time() + ttl
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.keys.process(self.process_id), b"1", px=int(self.forget_after * 1000))
        pipe.expire(self.keys.reply(self.process_id), int(max(ttl, 60)))
        for key in self.local_command_types():
            pipe.xgroup_create(self.keys.command(key), WORKERS, id="0", mkstream=True)
            pipe.zadd(self.keys.handlers(key), {self.process_id: expiry})
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
                raise result
        if self._closing:
            await self._withdraw()

    async def _withdraw(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for key in self.local_command_types():
            pipe.zrem(self.keys.handlers(key), self.process_id)
        await pipe.execute()

    async def handled_elsewhere(self, command_type: type[Command], *, fresh: bool = False) -> bool:
        """Whether a connected process advertises a handler for ``command_type``."""
        key = type_key(command_type)
        now = time.time()
        if not fresh and self._handlers_cache.get(key, 0.0) > now:
            return True
        found = await self.redis.zrangebyscore(self.keys.handlers(key), now, "+inf", 0, 1)
        if found:
            self._handlers_cache[key] = now + self.heartbeat
            return True
        self._handlers_cache.pop(key, None)
        return False

    async def command_entry(self, command_type: type[Command]) -> HandlerEntry:
        """Return a handler entry that runs ``command_type`` in another process.

        Raises:
            HandlerNotFoundError: No connected process handles the type.
        """
        return await self.caller.entry(command_type)

    async def _heartbeat_loop(self) -> None:
        beats = 0
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self.heartbeat)
            await self._advertise()
            await self.runner.renew_and_claim()
            beats += 1
            if beats % 5 == 1:
                await self.trim()

    # -------------------------------------------------------------- events

    def forward(self, record: Record) -> None:
        """Buffer a locally accepted event for the shared bus (called under the bus's lock)."""
        if len(self._buffer) >= self.max_buffer:
            self._buffer.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                logger.error(
                    "Redis at %s is unreachable and the link's buffer is full: %d events dropped "
                    "so far (they are still in this process's log).",
                    redact(self.url),
                    self.dropped,
                )
        self._buffer.append(record)
        if threading.get_ident() == self._thread:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _send_loop(self) -> None:
        buffer = self._buffer
        origin = self.process_id.encode()
        stream = self.keys.events
        while True:
            raise_if_cancelled()
            if not buffer:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(islice(buffer, 0, 1000))
            pipe = self.redis.pipeline(transaction=False)
            for record in batch:
                pipe.xadd(stream, {b"m": record.line, b"o": origin})
            await pipe.execute()
            for _ in batch:
                buffer.popleft()
            self.sent += len(batch)

    async def _event_loop(self) -> None:
        group = self.keys.event_group(self.process_id)
        stream = self.keys.events
        origin = self.process_id.encode()
        transport = self.bus._transport
        block = int(self.heartbeat * 1000)
        while True:
            raise_if_cancelled()
            try:
                answer = await self.blocking.xreadgroup(
                    group, "c", {stream: ">"}, count=1000, block=block
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                logger.warning(
                    "This process's consumer group was gone (Redis lost it, or this process "
                    "was silent for %g s and counted as gone); events meanwhile were missed.",
                    self.forget_after,
                )
                await self._ensure_groups()
                continue
            if not answer:
                continue
            ids = []
            for entry_id, fields in answer[0][1]:
                ids.append(entry_id)
                if not fields or fields.get(b"o") == origin:
                    continue
                item = self._decode_event(fields.get(b"m", b""))
                if item is None:
                    continue
                if transport.queue.is_full():
                    await transport.reserve()
                transport.put(item)
                self.received += 1
            await self.blocking.xack(stream, group, *ids)

    def _decode_event(self, line: bytes) -> tuple[Event, Any] | None:
        try:
            envelope = decode(line)
            cls = envelope.message_class()
            if cls is None or not issubclass(cls, Event):
                return None
            if not self.bus._registry.event_handlers(cls):
                return None
            event = envelope.to_message()
        except LogFormatError as exc:
            logger.warning("Skipped an event from the shared bus that does not decode: %s", exc)
            return None
        assert isinstance(event, Event)
        return event, envelope.span_context()

    # -------------------------------------------------------------- trimming

    async def trim(self) -> None:
        """Trim the streams up to what every live consumer group has read and acknowledged.

        Groups of processes whose heartbeat expired (killed ones) are removed first.
        """
        await self._trim(self.keys.events, drop_dead=True)
        for key in self.local_command_types():
            await self._trim(self.keys.command(key), drop_dead=False)

    async def _trim(self, stream: str, *, drop_dead: bool) -> None:
        try:
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:
            return  # no such stream yet
        floor: bytes | None = None
        for group in groups:
            name = group["name"].decode()
            if (
                drop_dead
                and name.startswith("p:")
                and not await self.redis.exists(self.keys.process(name[2:]))
            ):
                await self.redis.xgroup_destroy(stream, name)
                logger.info("Removed the consumer group of a dead process (%s).", name[2:])
                continue
            mark = group["last-delivered-id"]
            if group["pending"]:
                pending = await self.redis.xpending(stream, name)
                mark = pending["min"] or mark  # None when acknowledged meanwhile
            if floor is None or _id_key(mark) < _id_key(floor):
                floor = mark
        if floor is None:
            await self.redis.xtrim(stream, maxlen=0, approximate=False)
        elif floor != b"0-0":
            await self.redis.xtrim(stream, minid=floor, approximate=False)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them, bounded: a task that will not end is logged."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, stuck = await asyncio.wait(tasks, timeout=5)
    for task in stuck:
        logger.error("The shared bus's task %s did not end when cancelled.", task.get_name())


def _id_key(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)
