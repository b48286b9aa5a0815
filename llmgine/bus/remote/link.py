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
import logging
import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from llmgine.bus.registry import HandlerEntry
from llmgine.bus.remote.adverts import Adverts
from llmgine.bus.remote.caller import RemoteCaller
from llmgine.bus.remote.clients import close_clients, connect_error, open_clients, sync_client
from llmgine.bus.remote.clock import ServerClock
from llmgine.bus.remote.connection import Connection
from llmgine.bus.remote.events import EventChannel
from llmgine.bus.remote.heartbeat import Heartbeat
from llmgine.bus.remote.keys import Keys, redact
from llmgine.bus.remote.listeners import Listeners
from llmgine.bus.remote.recovery import Recovery
from llmgine.bus.remote.runner import CommandRunner
from llmgine.bus.remote.supervisor import Supervisor
from llmgine.bus.remote.tasks import NETWORK_ERRORS, raise_if_cancelled
from llmgine.bus.remote.trim import trim
from llmgine.bus.remote.waiting import WaitingCommands
from llmgine.errors import ConfigurationError
from llmgine.messages.events import Event
from llmgine.observability.sinks import Record

if TYPE_CHECKING:
    from llmgine.bus.ports import BusPort
    from llmgine.messages.commands import Command

__all__ = ["RedisLink"]

logger = logging.getLogger(__name__)


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
        self.process_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.redis, self.blocking = open_clients(url, connect_timeout)
        self.connection = Connection(
            self.redis, self.keys, self.process_id, heartbeat, self.blocking, redact(url)
        )
        """What each part of the link is given (the parts never see the link)."""
        self._closing = threading.Event()
        # The parts, each given the connection and what it needs of the others.
        conn = self.connection
        self.clock = ServerClock(self.redis)
        self.adverts = Adverts(conn, bus, self.clock, forget_after)
        self.listeners = Listeners(conn, bus, forget_after)
        self.recovery = Recovery(conn, self.adverts.ensure_groups, self._rejoin, forget_after)
        regroup = self.recovery.regroup
        self.events = EventChannel(conn, bus, self.listeners, regroup, max_buffer)
        self.waiting = WaitingCommands(conn, self.adverts)
        self.caller = RemoteCaller(
            conn, self.listeners, self.adverts, self.clock.now_ms, self.events.read_past,
            self.waiting,
        )  # fmt: skip
        self.runner = CommandRunner(
            conn,
            bus,
            self.adverts,
            self.events,
            self.listeners,
            server_ms=self.clock.now_ms,
            regroup=regroup,
            closing=self._closing,
            connect=self._claims_client,
            claim_after=claim_after,
            max_concurrency=max_concurrency,
            max_deliveries=max_deliveries,
        )
        self.beats = Heartbeat(
            conn, self.clock, self.adverts, self.listeners, self.caller.trim, forget_after,
            self._closing,
        )  # fmt: skip
        """The heartbeat's round trip."""
        self.supervisor = Supervisor(conn, self._reconnect)

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
                await self.clock.sync()
                await self.recovery.start()
                await self.adverts.ensure_groups(events_from="$")
                await self.listeners.announce(force=True)
                await self.beats.beat()
        except Exception as exc:
            await close_clients(self.redis, self.blocking)
            raise connect_error(exc, redact(self.url), self.connect_timeout) from exc
        for name, body in (
            ("sender", self.events.send_loop),
            ("events", self.events.receive_loop),
            ("commands", self.runner.read_loop),
            ("replies", self.caller.reply_loop),
            ("heartbeat", self._heartbeat_loop),
        ):
            self.supervisor.spawn(name, body)
        logger.info("Connected to the shared bus at %s as %s.", redact(self.url), self.process_id)

    async def close(self) -> None:
        """Stop taking work, finish what runs, send what is buffered, and leave.

        Commands this process runs are finished and answered; events buffered for
        Redis are sent. Redis is waited for ``stop_timeout`` seconds at most in all
        (unreachable or stalled); what could not be done then is logged as an error.
        """
        self._closing.set()
        await self.supervisor.cancel("events", "commands")
        budget = time.monotonic() + self.stop_timeout

        def left() -> float:
            return max(0.0, budget - time.monotonic())

        failed: list[str] = []
        try:
            async with asyncio.timeout(left()):
                await self.beats.withdraw()
        except (*NETWORK_ERRORS, TimeoutError):
            failed.append("withdraw its handlers (others learn it within three heartbeats)")
        await self.runner.drain()
        await self.bus.join()  # events handled: what they publish is buffered
        if not await self.flush(max(left(), 0.1)):
            failed.append(f"send {self.events.buffered} buffered events to the shared bus")
        await self.supervisor.cancel()
        not_marked = await self.waiting.abandon_all(
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
                await self.beats.forget()
        except (*NETWORK_ERRORS, TimeoutError):
            pass  # its heartbeat key expires; trimming forgets its group after forget_after
        await close_clients(self.redis, self.blocking)
        if failed:
            logger.error(
                "Redis at %s did not answer within stop_timeout (%g s): this process left the "
                "shared bus without being able to %s.",
                redact(self.url),
                self.stop_timeout,
                "; ".join(failed),
            )
        logger.info("Disconnected from the shared bus at %s.", redact(self.url))

    def _claims_client(self) -> Any:
        """The sync client of the thread that renews the claims of running commands."""
        return sync_client(self.url, max(5.0, 2 * self.heartbeat), self.connect_timeout)

    async def _reconnect(self) -> None:
        """Join again after an outage: Redis may have restarted, even without its data."""
        await self.clock.sync()
        await self.recovery.reconnected()
        await self.adverts.ensure_groups(events_from="$")
        await self.beats.beat()

    async def _rejoin(self) -> None:
        """Join again after Redis lost its data (the groups are made anew already)."""
        await self.beats.beat()
        await self.listeners.after_data_loss()
        await self.caller.after_data_loss()

    async def _heartbeat_loop(self) -> None:
        beats = 0
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self.heartbeat)
            await self.listeners.announce()  # a handler registered here since the last beat
            if await self.beats.beat() != self.recovery.epoch:
                await self.recovery.check()
            await self.runner.renew_and_claim()
            await self.waiting.watch()
            beats += 1
            if beats % 5 == 1:
                await self.trim()

    # ------------------------------------------------------------ what the link offers

    async def handled_elsewhere(self, command_type: type[Command], *, fresh: bool = False) -> bool:
        """Whether a connected process advertises a handler for ``command_type``."""
        return await self.adverts.handled_elsewhere(command_type, fresh=fresh)

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
        return await self.events.flush(timeout)

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

    async def trim(self) -> None:
        """Trim the streams up to what every live consumer group has read and acknowledged.

        Groups of processes whose heartbeat expired (killed ones) are removed first.
        """
        await trim(self.connection, self.adverts.local_command_types())

    def forward(self, record: Record) -> None:
        """Hand a locally accepted event to the shared bus (called under the bus's lock).

        Buffered for the sender task if another connected process handles its type;
        never waits.
        """
        self.events.forward(record)
