"""Commands across processes, the worker's side: take commands, run them, answer.

A worker reads the stream of each command type it handles through the group
``workers`` (so exactly one worker takes each entry) and runs the handler in a span
that is a child of the caller's span. Then one script, in one round trip, records the
reply under the entry's request id (one per ``execute()`` call), acknowledges the
entry and sends the reply to the caller; when a reply was recorded already (the
command ran elsewhere, or its caller abandoned it) nothing is sent, so an
``execute()`` completes at most once. The same command object executed again is a
new request, and runs again, as it does in-process.

Every entry is answered, whatever happens to it:

- a handler's exception of any kind (``CancelledError``, ``SystemExit``,
  ``KeyboardInterrupt`` included) gives a failed result; the worker goes on serving;
- an entry whose command does not decode here (another version of its class) is
  answered with a failed result that says which worker could not decode which type,
  and why; an entry that is not a command at all is acknowledged and logged once;
- sync handlers run in a handler thread, so the worker's loop (its heartbeat, the
  renewal of its claims) goes on while they run.

Deadlines: an entry carries its caller's deadline (``execute(timeout=)``) on the
Redis server's clock. A worker never starts a command past it (the caller was told it
failed), and runs it with what is left of it as its timeout.

Takeover: a worker renews its claim on the commands it runs at each heartbeat, from a
thread of its own as well (so an async handler that blocks the event loop keeps its
claim; the worker logs how long its loop was blocked); an entry left idle longer than
``claim_after`` (its worker died) is taken over by another worker, which first asks a
script whether a reply was recorded (then it sends it again, or nothing for an
abandoned command) and whether the deadline passed. A worker paused (not dead:
SIGSTOP, a suspended VM) longer than ``claim_after`` cannot renew anything: its
command is taken over and runs twice; the first recorded reply is the caller's
result, and the worker that finishes second logs that the command ran twice. An
entry delivered ``max_deliveries`` times already (each worker that took it died: the
command crashes its worker) is answered as failed instead of run again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from llmgine.bus.remote.adverts import Adverts
from llmgine.bus.remote.answers import crashed, run_handler, undecodable
from llmgine.bus.remote.claims import ClaimKeeper
from llmgine.bus.remote.connection import Connection
from llmgine.bus.remote.entries import (
    ABANDONED,
    FINISH,
    REPLY_TTL,
    RESULT_TTL,
    START,
    Entry,
    encode_reply,
)
from llmgine.bus.remote.events import EventChannel
from llmgine.bus.remote.keys import WORKERS
from llmgine.bus.remote.listeners import Listeners
from llmgine.bus.remote.tasks import raise_if_cancelled
from llmgine.bus.remote.wire import load_message
from llmgine.errors import LogFormatError
from llmgine.messages.commands import Command
from llmgine.observability.codec import decode
from llmgine.observability.events import SpanContext

if TYPE_CHECKING:
    from llmgine.bus.ports import BusPort

__all__ = ["CommandRunner"]

logger = logging.getLogger(__name__)


class CommandRunner:
    """The worker's side: takes commands from the streams and runs their handlers.

    Args:
        conn: The connection to the shared bus.
        port: The local bus: its command handlers, and where spans are emitted.
        adverts: This process's adverts (the command types it handles).
        events: The events channel (what a handler publishes goes out before its reply).
        listeners: What this process knows of the callers' announcements.
        server_ms: The Redis server's clock now, in ms (deadlines are on it).
        regroup: Makes the group of a command stream again when it is found gone.
        closing: Set once this process leaves: it takes over no command then.
        connect: Makes the sync Redis client of the claim keeper's thread.
        claim_after: Seconds an entry may sit with a dead worker before it is taken over.
        max_concurrency: Commands run here at once.
        max_deliveries: Times a command is handed to a worker at most.
    """

    def __init__(
        self,
        conn: Connection,
        port: BusPort,
        adverts: Adverts,
        events: EventChannel,
        listeners: Listeners,
        *,
        server_ms: Callable[[], int],
        regroup: Callable[[], Awaitable[None]],
        closing: threading.Event,
        connect: Callable[[], Any],
        claim_after: float,
        max_concurrency: int,
        max_deliveries: int,
    ) -> None:
        self.conn = conn
        self.port = port
        self.adverts = adverts
        self.events = events
        self.listeners = listeners
        self.server_ms = server_ms
        self.regroup = regroup
        self.closing = closing
        self.connect = connect
        self.claim_after = claim_after
        self.max_concurrency = max_concurrency
        self.max_deliveries = max_deliveries
        self.completed = 0
        """Commands this process ran to completion for other processes."""
        self._running: dict[asyncio.Task[None], tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        """Guards ``_running`` and ``_adverts`` for the claim keeper's thread."""
        self._adverts: list[str] = []
        self._keeper: ClaimKeeper | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._classes: dict[str, type[Command]] = {}
        self._finish = conn.redis.register_script(FINISH)
        self._check = conn.redis.register_script(START)
        self._warned_malformed = False
        self._grouped: set[str] = set()
        """Command streams whose group this process made (or found) since it connected."""

    async def read_loop(self) -> None:
        """Take new commands of the types handled here, as many as there is room for."""
        conn = self.conn
        block = int(conn.heartbeat * 1000)
        while True:
            raise_if_cancelled()
            room = self.max_concurrency - len(self._running)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            types = self.adverts.local_command_types()
            self._classes = {conn.keys.command(k): cls for k, cls in types.items()}
            adverts = [conn.keys.handlers(k) for k in types]
            with self._lock:  # what the claim keeper renews while the loop is blocked
                self._adverts = adverts
            streams = dict.fromkeys(self._classes, ">")
            if not streams:
                await asyncio.sleep(conn.heartbeat)
                continue
            new = [stream for stream in streams if stream not in self._grouped]
            if new:  # a handler registered since connecting: its group may not exist yet
                await self.adverts.ensure_command_groups(new)
                self._grouped.update(new)
            try:
                answer = await conn.blocking.xreadgroup(
                    WORKERS, conn.process_id, streams, count=room, block=block
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.regroup()
                continue
            for stream, entries in answer or ():
                for entry_id, fields in entries:
                    self._start(stream, entry_id, fields, deliveries=1)
            # Let the commands just taken start first: a quick one is answered before
            # the next read is sent, which would otherwise delay its reply.
            await asyncio.sleep(0)

    async def renew_and_claim(self) -> None:
        """Renew the claims on running commands; take over those a dead worker left."""
        conn = self.conn
        redis = conn.redis
        by_stream: dict[str, list[bytes]] = {}
        for stream, entry_id in self._running.values():
            by_stream.setdefault(stream, []).append(entry_id)
        if by_stream:
            pipe = redis.pipeline(transaction=False)
            for stream, ids in by_stream.items():
                pipe.xclaim(stream, WORKERS, conn.process_id, 0, ids, justid=True)
            await pipe.execute(raise_on_error=False)  # an entry Redis lost is not renewed
        if self.closing.is_set():
            return
        min_idle = int(self.claim_after * 1000)
        for key in self.adverts.local_command_types():
            room = self.max_concurrency - len(self._running)
            if room <= 0:
                return
            stream = conn.keys.command(key)
            try:
                idle = await redis.xpending_range(
                    stream, WORKERS, min="-", max="+", count=room, idle=min_idle
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                continue
            for pending in idle:
                entry_id = pending["message_id"]
                deliveries = int(pending["times_delivered"]) + 1
                # Only the id: Redis 6.2 gives no id for an entry deleted since (abandoned).
                # The count of deliveries is set here, since JUSTID does not count one.
                taken = await redis.xclaim(
                    stream,
                    WORKERS,
                    conn.process_id,
                    min_idle,
                    [entry_id],
                    justid=True,
                    retrycount=deliveries,
                )
                if not taken:
                    continue  # another worker took it first
                found = await redis.xrange(stream, entry_id, entry_id, count=1)
                logger.warning(
                    "Took over command entry %s of %s (delivery %d): its worker stopped answering.",
                    entry_id.decode(),
                    key,
                    deliveries,
                )
                self._start(stream, entry_id, found[0][1] if found else None, deliveries=deliveries)

    def _start(self, stream: bytes | str, entry_id: bytes, fields: Any, *, deliveries: int) -> None:
        name = stream.decode() if isinstance(stream, bytes) else stream
        work = self._handle(name, entry_id, fields or {}, deliveries=deliveries)
        task = asyncio.get_running_loop().create_task(work)
        with self._lock:
            self._running[task] = (name, entry_id)
        task.add_done_callback(self._finished)
        if self._keeper is None:
            self._keeper = ClaimKeeper(
                self.conn, self.claims, self.server_ms, self.closing, self.connect
            )

    @property
    def running(self) -> int:
        """How many commands run here now."""
        return len(self._running)

    def claims(self) -> tuple[list[tuple[str, bytes]], list[str]]:
        """The entries running here and the keys of this process's adverts (any thread)."""
        with self._lock:
            return list(self._running.values()), list(self._adverts)

    def _finished(self, task: asyncio.Task[None]) -> None:
        with self._lock:
            self._running.pop(task, None)
        self._room.set()
        if not task.cancelled() and task.exception() is not None:
            logger.error("A remote command failed in the worker.", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for the commands running here to finish and be answered."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
        if self._keeper is not None:
            keeper, self._keeper = self._keeper, None
            await keeper.stop()

    def _malformed(self, stream: str, entry_id: bytes, why: str) -> None:
        """An entry that is no command of this version: say so once (it is acknowledged)."""
        if self._warned_malformed:
            logger.debug("Dropped malformed entry %s of %s: %s", entry_id, stream, why)
            return
        self._warned_malformed = True
        logger.error(
            "Dropped entry %s of %s: %s. A process that is not an llmgine bus of this version "
            "writes to the shared bus's command streams (said once; later ones are dropped too).",
            entry_id.decode(errors="replace"),
            stream,
            why,
        )

    async def _handle(self, stream: str, entry_id: bytes, fields: Any, *, deliveries: int) -> None:
        conn = self.conn
        redis = conn.redis
        events = self.events
        entry = Entry(fields)
        if entry.line is None or entry.reply_to is None or entry.request is None:
            await redis.xack(stream, WORKERS, entry_id)  # a deleted or foreign entry
            if entry.line is not None or entry.reply_to is not None:
                self._malformed(stream, entry_id, "it has no command, reply stream or id")
            return
        keys = [conn.keys.result(entry.request), stream, entry.reply_to]
        if deliveries > 1:
            verdict = await self._check(
                keys, [entry_id, WORKERS, ABANDONED, entry.deadline, RESULT_TTL, REPLY_TTL]
            )
            if verdict != b"run":
                return  # it ran (its reply is sent again), or its caller gave up on it
        elif entry.deadline and entry.deadline <= self.server_ms():
            # Its caller was told it timed out: it never starts.
            pipe = redis.pipeline(transaction=False)
            pipe.set(keys[0], ABANDONED, nx=True, ex=RESULT_TTL)
            pipe.xack(stream, WORKERS, entry_id)
            pipe.xdel(stream, entry_id)
            await pipe.execute()
            logger.warning(
                "Dropped command entry %s of %s: its caller's timeout passed before it started.",
                entry_id.decode(),
                stream,
            )
            return
        sent = events.sent
        try:
            command, parent = self._load(stream, entry.line)
        except (LogFormatError, ValueError) as exc:
            command_id = entry.command_id()
            result, tb = undecodable(conn.process_id, stream, command_id, exc), ""
        else:
            command_id = str(command.id)
            if deliveries > self.max_deliveries:
                result, tb = crashed(command, deliveries - 1, self.max_deliveries), ""
            else:
                if entry.version > self.listeners.known_version(entry.caller):
                    await self.listeners.refresh_one(entry.caller)  # it registered handlers since
                timeout = None
                if entry.deadline:
                    timeout = max(0.001, (entry.deadline - self.server_ms()) / 1000)
                result, tb = await run_handler(self.port, command, parent, entry.caller, timeout)
        # What the handler published goes out before its reply, and the reply says up to
        # where: the caller reads that far before its execute() returns.
        await events.flush(self.claim_after)
        upto = events.last_sent if events.sent > sent else None
        reply = encode_reply(entry.request, command_id or "", result, tb, conn.process_id, upto)
        finished = await self._finish(
            keys, [reply, RESULT_TTL, entry_id, WORKERS, REPLY_TTL, ABANDONED]
        )
        if finished == 2:
            self._malformed(stream, entry_id, f"its reply stream {entry.reply_to!r} is no stream")
        elif finished == 1:
            self.completed += 1
        elif finished == 3:
            logger.warning(
                "Command %s was abandoned by its caller (its timeout passed, or it left) while "
                "it ran here; this run's result is dropped.",
                command_id,
            )
        else:
            logger.warning(
                "Command %s RAN TWICE: another worker took it over and answered first (this "
                "worker held it longer than claim_after without renewing its claim: the process "
                "was paused or starved); the caller got that worker's result, this one's is "
                "dropped.",
                command_id,
            )

    def _load(self, stream: str, line: bytes) -> tuple[Command, SpanContext | None]:
        """The command of an entry: validated straight as its stream's type when known here."""
        cls = self._classes.get(stream)
        if cls is not None:
            return load_message(cls, line)
        envelope = decode(line)
        command = envelope.to_message()
        if not isinstance(command, Command):
            raise LogFormatError(f"A {envelope.type} on a command stream is not a command.")
        return command, envelope.span_context()
