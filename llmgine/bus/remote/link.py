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

Delivery: events that another connected process handles go to one stream (see
:mod:`~llmgine.bus.remote.listeners` for how processes learn who handles what); each
process reads it through its own consumer group and delivers to its local handlers
those it has handlers for, in stream order (so in publish order per publisher),
skipping its own (:mod:`~llmgine.bus.remote.events`). Commands go to a stream per
type read by the group ``workers``: exactly one process takes each
(:mod:`~llmgine.bus.remote.caller`, :mod:`~llmgine.bus.remote.runner`). Locally
published events are forwarded by a sender task from a local buffer, so
``publish()`` never waits on the network and nothing is sent under the bus's lock.

Redis going away: every loop of the link reconnects with backoff and says so in the
log. When Redis comes back without its data (a restart without persistence, seen from
the namespace's ``epoch`` token), the link says so, joins again (consumer groups,
handler advertisements) and fails the commands it sent whose entries were lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, ResponseError

from llmgine.bus.registry import HandlerEntry
from llmgine.bus.remote.caller import RemoteCaller
from llmgine.bus.remote.connection import Connection
from llmgine.bus.remote.events import EventChannel
from llmgine.bus.remote.keys import WORKERS, Keys, redact, type_key
from llmgine.bus.remote.listeners import Listeners
from llmgine.bus.remote.recovery import Recovery
from llmgine.bus.remote.runner import CommandRunner
from llmgine.bus.remote.tasks import NETWORK_ERRORS, cancel_all, raise_if_cancelled
from llmgine.bus.remote.trim import trim
from llmgine.errors import ConfigurationError, SharedBusConnectionError
from llmgine.messages.events import Event
from llmgine.observability.sinks import Record

if TYPE_CHECKING:
    from llmgine.bus.ports import BusPort
    from llmgine.messages.commands import Command

__all__ = ["RedisLink"]

logger = logging.getLogger(__name__)

POOL_SIZE = 32
"""Connections a process opens to Redis at most for its calls (blocking reads apart)."""


class RedisLink:
    """Joins a :class:`~llmgine.bus.MessageBus` to a shared bus made of Redis Streams.

    Made by ``await bus.connect(url, namespace=..., **options)``; the options are the
    keyword arguments below.

    Args:
        bus: The local bus's port (:class:`~llmgine.bus.ports.BusPort`): what the link
            may do to it.
        url: The Redis URL, e.g. ``redis://127.0.0.1:6379/0``.
        namespace: Prefix of every key; buses in one namespace form one shared bus.
        heartbeat: Seconds between heartbeats (handler advertisements, claims, trims).
            It also bounds how long other processes may take to learn of this
            process's event handlers (usually they learn at once).
        claim_after: Seconds a command may sit with a dead worker before another takes
            it over (a live worker renews its claim on a running command).
        max_concurrency: Remote commands this process runs at once.
        max_buffer: Events kept locally while Redis is unreachable; past that the
            oldest are dropped and counted (``dropped``), with an error logged when
            the dropping starts and a warning with the count when Redis is back.
        forget_after: Seconds without a heartbeat after which a process counts as gone
            and its consumer group on the events stream is removed (so that trimming
            goes on). Long, because a notebook's loop may be busy in a long cell.
        max_deliveries: Times a command is handed to a worker at most. A command whose
            worker died (stopped answering) is taken over by another; one that took
            down ``max_deliveries`` workers in turn is answered as failed
            (``WorkerCrashedError``) instead of taking down the next.
        connect_timeout: Seconds ``connect()`` waits for Redis to answer before it
            raises :class:`~llmgine.errors.SharedBusConnectionError` (a silent or
            unreachable server).
        stop_timeout: Seconds ``disconnect()``/``stop()`` waits at most for an
            unreachable or stalled Redis (to send buffered events, to withdraw, to
            mark the commands still waiting as abandoned); what could not be done is
            logged. Commands running here are still finished first.
    """

    def __init__(
        self,
        bus: BusPort,
        url: str,
        namespace: str = "llmgine",
        *,
        heartbeat: float = 1.0,
        claim_after: float = 15.0,
        max_concurrency: int = 8,
        max_buffer: int = 100_000,
        forget_after: float = 300.0,
        max_deliveries: int = 3,
        connect_timeout: float = 5.0,
        stop_timeout: float = 5.0,
    ) -> None:
        if (
            not heartbeat > 0
            or not claim_after > 0
            or not connect_timeout > 0
            or not stop_timeout > 0
            or max_concurrency < 1
            or max_buffer < 1
            or max_deliveries < 1
        ):
            raise ConfigurationError(
                "heartbeat, claim_after, connect_timeout and stop_timeout must be positive; "
                "max_concurrency, max_buffer and max_deliveries at least 1."
            )
        self.bus = bus
        self.url = url
        self.keys = Keys(namespace)
        self.heartbeat = heartbeat
        self.claim_after = claim_after
        self.forget_after = forget_after
        self.connect_timeout = connect_timeout
        self.stop_timeout = stop_timeout
        self.warned_unreachable = False
        """Whether the warning that Redis is unreachable was logged (once per outage)."""
        self._clock_offset_ms = 0.0
        self._advert_left: dict[str, float] = {}
        """The longest time left on an advert seen, by command type (see advert_lifetime)."""
        self.process_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # Any: redis-py types each reply as a union of its RESP2 and RESP3 shapes; this
        # link reads the RESP2 shapes. No retries inside redis-py: a retried XADD could
        # add a command twice; the link's own loops reconnect with backoff instead.
        options: dict[str, Any] = {
            "socket_timeout": 30,
            "socket_connect_timeout": connect_timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        # A bounded pool that makes a call wait for a free connection (within the
        # caller's own timeout) rather than fail: any number of execute() calls at once.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=None, **options
        )
        self.redis: Any = aioredis.Redis.from_pool(pool)
        # The blocking reads have connections of their own: cancelling one at close
        # never leaves a half-read reply on a connection the senders use.
        self.blocking: Any = aioredis.Redis.from_url(url, **options)
        self._loop = asyncio.get_running_loop()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._down_since: float | None = None
        self._handlers_cache: dict[str, float] = {}
        self.connection = Connection(self.redis, self.keys, self.process_id, heartbeat)
        """What the parts that need no more of the link are given."""
        self.recovery = Recovery(self)
        self.listeners = Listeners(self.connection, bus, forget_after)
        self.events = EventChannel(self, max_buffer)
        self.caller = RemoteCaller(self)
        self.runner = CommandRunner(self, max_concurrency, max_deliveries)

    def __repr__(self) -> str:
        return f"<RedisLink {redact(self.url)} namespace={self.keys.namespace!r}>"

    @property
    def sent(self) -> int:
        """Events sent to Redis."""
        return self.events.sent

    @property
    def received(self) -> int:
        """Events from other processes delivered to local handlers."""
        return self.events.received

    @property
    def skipped(self) -> int:
        """Events from other processes skipped undecoded: no handler here for their type."""
        return self.events.skipped

    @property
    def data_losses(self) -> int:
        """Times Redis came back without the data this process had written."""
        return self.recovery.data_losses

    @property
    def dropped(self) -> int:
        """Events dropped because the local buffer overflowed while Redis was unreachable."""
        return self.events.dropped

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Connect, join the shared bus and start the link's tasks.

        Raises:
            SharedBusConnectionError: Redis cannot be reached at the URL, or does not
                answer within ``connect_timeout`` seconds (also a ``ConnectionError``).
            ConfigurationError: Redis refuses the URL's settings (a database index out
                of range, a wrong password...).
        """
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self.sync_clock()
                await self.recovery.start()
                await self._ensure_groups(events_from="$")
                await self.listeners.announce(force=True)
                await self._advertise()
        except Exception as exc:
            await self._close_clients()
            raise self._open_error(exc) from exc
        for name, body in (
            ("sender", self.events.send_loop),
            ("events", self.events.receive_loop),
            ("commands", self.runner.read_loop),
            ("replies", self.caller.reply_loop),
            ("heartbeat", self._heartbeat_loop),
        ):
            self._spawn(name, body)
        logger.info("Connected to the shared bus at %s as %s.", redact(self.url), self.process_id)

    def _open_error(self, exc: Exception) -> Exception:
        """What ``open()`` raises for ``exc``: a clear llmgine error, or ``exc`` itself."""
        where = redact(self.url)
        if isinstance(exc, TimeoutError):
            return SharedBusConnectionError(
                f"Redis at {where} did not answer within {self.connect_timeout:g} s "
                "(connect_timeout): is it the right host and port, and is the server "
                "running and not stalled?"
            )
        if isinstance(exc, AuthenticationError | AuthorizationError):
            return ConfigurationError(
                f"Redis at {where} refused this client: {exc}. Check the user and password "
                "in the URL (redis://user:password@host:port/db)."
            )
        if isinstance(exc, NETWORK_ERRORS):
            return SharedBusConnectionError(
                f"Cannot reach Redis at {where} ({type(exc).__name__}: {exc}); is the server "
                "running? (RedisServer() starts a local one.)"
            )
        if isinstance(exc, ResponseError):
            return ConfigurationError(
                f"Redis at {where} refused the connection's settings: {exc}. Check the URL "
                "(the database index after the port must exist on the server, 0-15 by default)."
            )
        return exc

    async def sync_clock(self) -> None:
        """Measure how far the Redis server's clock is from this process's (for deadlines)."""
        before = time.time()
        now = await self.redis.time()
        self._set_offset(now, before, time.time())

    def _set_offset(self, now: Any, before: float, after: float) -> None:
        seconds, micros = now
        self._clock_offset_ms = seconds * 1000 + micros / 1000 - (before + after) * 500

    def server_time_ms(self) -> int:
        """The Redis server's clock now, in ms, as this process estimates it."""
        return int(time.time() * 1000 + self._clock_offset_ms)

    async def _close_clients(self) -> None:
        for client in (self.redis, self.blocking):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await client.aclose()

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
        Redis are sent. Redis is waited for ``stop_timeout`` seconds at most in all
        (unreachable or stalled); what could not be done then is logged as an error.
        """
        self._closing = True
        intake = [t for t in self._tasks if t.get_name().endswith(("events", "commands"))]
        await cancel_all(intake)
        budget = time.monotonic() + self.stop_timeout

        def left() -> float:
            return max(0.0, budget - time.monotonic())

        failed: list[str] = []
        try:
            async with asyncio.timeout(left()):
                await self._withdraw()
        except (*NETWORK_ERRORS, TimeoutError):
            failed.append("withdraw its handlers (others learn it within three heartbeats)")
        await self.runner.drain()
        await self.bus.join()  # events handled: what they publish is buffered
        if not await self.flush(max(left(), 0.1)):
            failed.append(f"send {self.events.buffered} buffered events to the shared bus")
        await cancel_all(self._tasks)
        not_marked = await self.caller.abandon_waiting(
            "the bus disconnected from Redis before the result came; the command is "
            "abandoned: no worker starts it later, and a result from one running it is dropped",
            max(left(), 0.5),
        )
        if not_marked:
            failed.append(
                f"mark {not_marked} waiting command(s) as abandoned (a worker may still run "
                "those sent without a timeout)"
            )
        try:
            async with asyncio.timeout(max(left(), 0.5)):
                pipe = self.redis.pipeline(transaction=False)
                pipe.xgroup_destroy(self.keys.events, self.keys.event_group(self.process_id))
                pipe.delete(self.keys.reply(self.process_id), self.keys.process(self.process_id))
                await pipe.execute(raise_on_error=False)
        except (*NETWORK_ERRORS, TimeoutError):
            pass  # its heartbeat key expires; trimming forgets its group after forget_after
        await self._close_clients()
        if failed:
            logger.error(
                "Redis at %s did not answer within stop_timeout (%g s): this process left the "
                "shared bus without being able to %s.",
                redact(self.url),
                self.stop_timeout,
                "; ".join(failed),
            )
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
                await self.sync_clock()
                await self.recovery.reconnected()
                await self._ensure_groups(events_from="$")
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

    async def regroup(self) -> None:
        """A consumer group of this process was gone: find out why, and make it again."""
        await self.recovery.regroup()

    # ------------------------------------------------------------ directory

    def local_command_types(self) -> dict[str, type[Command]]:
        """The command types this process has handlers for, by their shared name."""
        rows = self.bus.registrations()
        return {
            type_key(r.message_type): r.message_type  # type: ignore[misc]
            for r in rows
            if r.kind == "command"
        }

    async def _ensure_groups(self, *, events_from: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xgroup_create(
            self.keys.events, self.keys.event_group(self.process_id), id=events_from, mkstream=True
        )
        for key in self.local_command_types():
            pipe.xgroup_create(self.keys.command(key), WORKERS, id="0", mkstream=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
                raise result

    async def _advertise(self) -> bytes | None:
        """Say which types this process handles, until its heartbeat stops.

        Also reads the other processes' announcements and the epoch token (returned).
        """
        ttl = self.heartbeat * 3
        # On the Redis server's clock, as every process reads them: a process whose own
        # clock is off is neither invisible (slow) nor kept "present" once dead (fast).
        expiry = self.server_time_ms() / 1000 + ttl
        pipe = self.redis.pipeline(transaction=False)
        pipe.time()
        pipe.set(self.keys.process(self.process_id), b"1", px=int(self.forget_after * 1000))
        pipe.expire(self.keys.reply(self.process_id), int(max(ttl, 60)))
        for key in self.local_command_types():
            pipe.xgroup_create(self.keys.command(key), WORKERS, id="0", mkstream=True)
            pipe.zadd(self.keys.handlers(key), {self.process_id: expiry})
        self.listeners.renew(pipe)
        self.caller.trim(pipe)
        pipe.get(self.keys.epoch)
        pipe.hgetall(self.keys.listeners)
        before = time.time()
        results = await pipe.execute(raise_on_error=False)
        after = time.time()
        for result in results:
            if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
                raise result
        if after - before < self.heartbeat / 2:
            # A quick round trip: measure the clock's offset again (a clock set since).
            self._set_offset(results[0], before, after)
        self.listeners.load(results[-1])
        if self._closing:
            await self._withdraw()
        epoch: bytes | None = results[-2]
        return epoch

    async def _withdraw(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for key in self.local_command_types():
            pipe.zrem(self.keys.handlers(key), self.process_id)
        await pipe.execute()
        await self.listeners.withdraw()

    async def handled_elsewhere(self, command_type: type[Command], *, fresh: bool = False) -> bool:
        """Whether a connected process advertises a handler for ``command_type``."""
        key = type_key(command_type)
        if not fresh and self._handlers_cache.get(key, 0.0) > time.monotonic():
            return True
        now = self.server_time_ms() / 1000  # adverts expire on the Redis server's clock
        found = await self.redis.zrevrangebyscore(
            self.keys.handlers(key), "+inf", now, 0, 1, withscores=True
        )
        if found:
            self._handlers_cache[key] = time.monotonic() + self.heartbeat
            # At least two of the advertising process's heartbeats: how long it may take
            # to advertise again after a stall.
            left = min(float(found[0][1]) - now, self.forget_after)
            self._advert_left[key] = max(self._advert_left.get(key, 0.0), left)
            return True
        self._handlers_cache.pop(key, None)
        return False

    def advert_lifetime(self, command_type: type[Command]) -> float:
        """The longest time left on an advert for ``command_type`` seen so far, in seconds.

        Adverts last three heartbeats of the process that wrote them: this tells a
        caller how long a live worker may take to advertise again (0: never seen).
        """
        return self._advert_left.get(type_key(command_type), 0.0)

    async def command_entry(
        self, command_type: type[Command], timeout: float | None = None
    ) -> HandlerEntry:
        """Return a handler entry that runs ``command_type`` in another process.

        Args:
            command_type: The command's type.
            timeout: The caller's ``execute(timeout=)``: it bounds the look-up, and
                travels with the command as its deadline.

        Raises:
            HandlerNotFoundError: No connected process handles the type.
        """
        return await self.caller.entry(command_type, timeout)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until the events buffered here are sent to Redis; say whether they are.

        Args:
            timeout: Seconds to wait at most (``None``: as long as it takes, so as long
                as Redis is unreachable).
        """
        try:
            await asyncio.wait_for(self.events.sent_all(), timeout)
        except TimeoutError:
            return False
        return True

    async def wait_for_listener(self, event_type: type[Event]) -> None:
        """Return once another connected process handles ``event_type`` (or a base of it).

        Events published before then do not reach such a process: use this after
        starting one, before publishing what it should hear. Bound it with
        ``asyncio.wait_for``.
        """
        await self.listeners.wait_for(event_type)

    async def refresh(self) -> None:
        """Learn now which event types the connected processes handle.

        Otherwise learnt from their notices as they come, and at every heartbeat.
        """
        await self.listeners.refresh()

    async def _heartbeat_loop(self) -> None:
        beats = 0
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self.heartbeat)
            await self.listeners.announce()  # a handler registered here since the last beat
            if await self._advertise() != self.recovery.epoch:
                await self.recovery.check()
            await self.runner.renew_and_claim()
            await self.caller.watch()
            beats += 1
            if beats % 5 == 1:
                await self.trim()

    async def trim(self) -> None:
        """Trim the streams up to what every live consumer group has read and acknowledged.

        Groups of processes whose heartbeat expired (killed ones) are removed first.
        """
        await trim(self.connection, self.local_command_types())

    # -------------------------------------------------------------- events

    def forward(self, record: Record) -> None:
        """Hand a locally accepted event to the shared bus (called under the bus's lock).

        Buffered for the sender task if another connected process handles its type;
        never waits.
        """
        self.events.forward(record)
