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
import contextlib
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson
import redis
from pydantic_core import to_json
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from llmgine.bus.handlers import (
    HandlerTimedOut,
    as_result,
    cancelled_from_outside,
    describe,
    failure_result,
)
from llmgine.bus.remote.caller import ABANDONED, RESULT_TTL
from llmgine.bus.remote.keys import WORKERS
from llmgine.bus.remote.tasks import raise_if_cancelled
from llmgine.bus.remote.wire import load_message
from llmgine.bus.session import _current_session
from llmgine.errors import HandlerNotFoundError, LogFormatError
from llmgine.messages.commands import Command, CommandResult
from llmgine.observability.codec import decode
from llmgine.observability.events import SpanContext
from llmgine.observability.jsonsafe import safe_repr
from llmgine.observability.spans import Span, _current_span

if TYPE_CHECKING:
    from llmgine.bus.remote.link import RedisLink

__all__ = ["CommandRunner"]

logger = logging.getLogger(__name__)

REPLY_TTL = 3600
"""Seconds a reply stream lives when its caller is gone (a live caller renews it)."""

# KEYS: the result key, the command stream, the caller's reply stream.
# ARGV: the reply, its TTL, the entry id, the group, the reply stream's TTL, the
# abandoned marker.
FINISH = """
local stored = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
redis.pcall('XACK', KEYS[2], ARGV[4], ARGV[3])
if not stored then
  if redis.call('GET', KEYS[1]) == ARGV[6] then return 3 end
  return 0
end
local sent = redis.pcall('XADD', KEYS[3], '*', 'r', ARGV[1])
if type(sent) == 'table' and sent['err'] then return 2 end
if redis.call('TTL', KEYS[3]) < 0 then redis.call('EXPIRE', KEYS[3], ARGV[5]) end
return 1
"""
"""Record the reply (unless one is), acknowledge the entry, answer: one round trip.

Returns 1, 0 when another run's reply was recorded already, 3 when the caller
abandoned the command, 2 when the entry's reply stream is
not a stream (a foreign entry): its reply is recorded, and dropped."""

# KEYS as FINISH. ARGV: the entry id, the group, the abandoned marker, the deadline in
# ms on the server's clock (0: none), the result's TTL, the reply stream's TTL.
START = """
local recorded = redis.call('GET', KEYS[1])
if recorded then
  redis.pcall('XACK', KEYS[2], ARGV[2], ARGV[1])
  if recorded ~= ARGV[3] then
    redis.pcall('XADD', KEYS[3], '*', 'r', recorded)
    if redis.call('TTL', KEYS[3]) < 0 then redis.pcall('EXPIRE', KEYS[3], ARGV[6]) end
  end
  return 'done'
end
local deadline = tonumber(ARGV[4])
if deadline > 0 then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) >= deadline then
    redis.call('SET', KEYS[1], ARGV[3], 'NX', 'EX', ARGV[5])
    redis.pcall('XACK', KEYS[2], ARGV[2], ARGV[1])
    redis.call('XDEL', KEYS[2], ARGV[1])
    return 'expired'
  end
end
return 'run'
"""
"""For a taken-over entry: send a recorded reply again; drop a command past its deadline."""


def _reply(
    request: str,
    command_id: str,
    result: CommandResult,
    tb: str,
    worker: str,
    events_upto: bytes | None,
) -> bytes:
    """The reply's JSON: the result serialized once, straight into the payload.

    ``events_upto`` is the id of the last event this process sent while it ran the
    command (what its handler published), if any.
    """
    fields: dict[str, Any] = {
        "request": request,
        "command_id": command_id,
        "traceback": tb,
        "worker": worker,
    }
    if events_upto is not None:
        fields["events_upto"] = events_upto.decode()
    head = orjson.dumps(fields)
    return b"".join(
        (head[:-1], b',"result":', to_json(result, fallback=safe_repr, inf_nan_mode="null"), b"}")
    )


def _one_line(exc: BaseException) -> str:
    """An error's message on one line (a pydantic error spans several)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 500 else text[:497] + "..."


class _Entry:
    """What a command stream's entry says, read without trusting it."""

    __slots__ = ("caller", "deadline", "line", "reply_to", "request", "version")

    def __init__(self, fields: dict[bytes, bytes]) -> None:
        self.line = fields.get(b"m")
        reply_to = fields.get(b"r")
        self.reply_to = reply_to.decode(errors="replace") if reply_to else None
        self.caller = fields.get(b"o", b"").decode(errors="replace")
        self.version = _int(fields.get(b"v"))
        self.deadline = _int(fields.get(b"d"))
        request = fields.get(b"a")
        # An entry of an older version names no request: its command id is the key.
        self.request = request.decode(errors="replace") if request else self.command_id()

    def command_id(self) -> str | None:
        """The command's id, read from the envelope alone (when the command does not decode)."""
        if self.line is None:
            return None
        try:
            raw = orjson.loads(self.line)
        except orjson.JSONDecodeError:
            return None
        found = raw.get("id") if isinstance(raw, dict) else None
        return found if isinstance(found, str) else None


def _uuid(raw: str | None) -> uuid.UUID | None:
    try:
        return None if raw is None else uuid.UUID(raw)
    except ValueError:
        return None


def _int(raw: bytes | None) -> int:
    try:
        return int(raw or 0)
    except ValueError:
        return 0


class _ClaimKeeper:
    """A thread of the worker's own that renews its claims, whatever its event loop does.

    An async handler that blocks the loop (``time.sleep``, heavy CPU work) stops the
    heartbeat: without this thread its claims would lapse after ``claim_after`` and
    another worker would run the command again. Each heartbeat, while commands run
    here, it renews their claims and this process's adverts (so callers do not take
    it for gone) over a small sync client of its own; and it notices when the loop
    answers late, which the loop then logs as a warning. Started with the first
    command run here; stopped once the runner drained.
    """

    def __init__(self, runner: CommandRunner) -> None:
        self._runner = runner
        self._link = runner.link
        self._stop = threading.Event()
        self._probe_sent: float | None = None
        self._thread = threading.Thread(
            target=self._serve, name="llmgine-redis-claims", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        link = self._link
        client = redis.Redis.from_url(
            link.url,
            socket_timeout=max(5.0, 2 * link.heartbeat),
            socket_connect_timeout=link.connect_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while not self._stop.wait(link.heartbeat):
                self._probe()
                claims, adverts = self._runner.claims()
                if not claims:
                    continue
                by_stream: dict[str, list[bytes]] = {}
                for stream, entry_id in claims:
                    by_stream.setdefault(stream, []).append(entry_id)
                expiry = link.server_time_ms() / 1000 + 3 * link.heartbeat
                pipe: Any = client.pipeline(transaction=False)
                for stream, ids in by_stream.items():
                    pipe.xclaim(stream, WORKERS, link.process_id, 0, ids, justid=True)
                for key in () if link._closing else adverts:  # withdrawn when closing
                    pipe.zadd(key, {link.process_id: expiry})
                try:
                    pipe.execute(raise_on_error=False)
                except (RedisError, OSError) as exc:  # the loop's own heartbeat says it
                    logger.debug("Could not renew the claims from their thread: %r", exc)
        finally:
            client.close()

    def _probe(self) -> None:
        """Ask the loop to say how late it answers (one question at a time)."""
        if self._probe_sent is not None:
            return
        self._probe_sent = time.monotonic()
        with contextlib.suppress(RuntimeError):  # the loop closed
            self._link._loop.call_soon_threadsafe(self._answered)

    def _answered(self) -> None:
        sent, self._probe_sent = self._probe_sent, None
        late = time.monotonic() - sent if sent is not None else 0.0
        if late > self._link.heartbeat:
            logger.warning(
                "This worker's event loop was blocked for %.1f s (longer than a heartbeat): "
                "a handler blocks it (an async handler calling time.sleep, or heavy work); "
                "make it await, or a sync handler (it runs in a thread). Its commands kept "
                "their claims meanwhile, but the process could not take or answer others.",
                late,
            )

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 10)


class CommandRunner:
    """The worker's side: takes commands from the streams and runs their handlers."""

    def __init__(self, link: RedisLink, max_concurrency: int, max_deliveries: int) -> None:
        self.link = link
        self.max_concurrency = max_concurrency
        self.max_deliveries = max_deliveries
        self.completed = 0
        """Commands this process ran to completion for other processes."""
        self._running: dict[asyncio.Task[None], tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        """Guards ``_running`` and ``_adverts`` for the claim keeper's thread."""
        self._adverts: list[str] = []
        self._keeper: _ClaimKeeper | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._classes: dict[str, type[Command]] = {}
        self._finish = link.redis.register_script(FINISH)
        self._check = link.redis.register_script(START)
        self._warned_malformed = False

    async def read_loop(self) -> None:
        """Take new commands of the types handled here, as many as there is room for."""
        link = self.link
        block = int(link.heartbeat * 1000)
        while True:
            raise_if_cancelled()
            room = self.max_concurrency - len(self._running)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            types = link.local_command_types()
            self._classes = {link.keys.command(k): cls for k, cls in types.items()}
            adverts = [link.keys.handlers(k) for k in types]
            with self._lock:  # what the claim keeper renews while the loop is blocked
                self._adverts = adverts
            streams = dict.fromkeys(self._classes, ">")
            if not streams:
                await asyncio.sleep(link.heartbeat)
                continue
            try:
                answer = await link.blocking.xreadgroup(
                    WORKERS, link.process_id, streams, count=room, block=block
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await link.regroup()
                continue
            for stream, entries in answer or ():
                for entry_id, fields in entries:
                    self._start(stream, entry_id, fields, deliveries=1)
            # Let the commands just taken start first: a quick one is answered before
            # the next read is sent, which would otherwise delay its reply.
            await asyncio.sleep(0)

    async def renew_and_claim(self) -> None:
        """Renew the claims on running commands; take over those a dead worker left."""
        link = self.link
        redis = link.redis
        by_stream: dict[str, list[bytes]] = {}
        for stream, entry_id in self._running.values():
            by_stream.setdefault(stream, []).append(entry_id)
        if by_stream:
            pipe = redis.pipeline(transaction=False)
            for stream, ids in by_stream.items():
                pipe.xclaim(stream, WORKERS, link.process_id, 0, ids, justid=True)
            await pipe.execute(raise_on_error=False)  # an entry Redis lost is not renewed
        if link._closing:
            return
        min_idle = int(link.claim_after * 1000)
        for key in link.local_command_types():
            room = self.max_concurrency - len(self._running)
            if room <= 0:
                return
            stream = link.keys.command(key)
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
                    link.process_id,
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
            self._keeper = _ClaimKeeper(self)

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
        link = self.link
        redis = link.redis
        entry = _Entry(fields)
        if entry.line is None or entry.reply_to is None or entry.request is None:
            await redis.xack(stream, WORKERS, entry_id)  # a deleted or foreign entry
            if entry.line is not None or entry.reply_to is not None:
                self._malformed(stream, entry_id, "it has no command, reply stream or id")
            return
        keys = [link.keys.result(entry.request), stream, entry.reply_to]
        if deliveries > 1:
            verdict = await self._check(
                keys, [entry_id, WORKERS, ABANDONED, entry.deadline, RESULT_TTL, REPLY_TTL]
            )
            if verdict != b"run":
                return  # it ran (its reply is sent again), or its caller gave up on it
        elif entry.deadline and entry.deadline <= link.server_time_ms():
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
        sent = link.events.sent
        try:
            command, parent = self._load(stream, entry.line)
        except (LogFormatError, ValueError) as exc:
            command_id = entry.command_id()
            result, tb = self._undecodable(stream, command_id, exc), ""
        else:
            command_id = str(command.id)
            if deliveries > self.max_deliveries:
                result, tb = self._crashed(command, deliveries - 1), ""
            else:
                if entry.version > link.listeners.known_version(entry.caller):
                    await link.listeners.refresh_one(entry.caller)  # it registered handlers since
                result, tb = await self._run(command, parent, entry)
        # What the handler published goes out before its reply, and the reply says up to
        # where: the caller reads that far before its execute() returns.
        await link.flush(link.claim_after)
        upto = link.events.last_sent if link.events.sent > sent else None
        reply = _reply(entry.request, command_id or "", result, tb, link.process_id, upto)
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

    def _undecodable(self, stream: str, command_id: str | None, exc: Exception) -> CommandResult:
        """The failed result of a command this worker cannot decode (another version of it)."""
        type_name = stream.rpartition(":cmd:")[2] or stream
        message = (
            f"Worker {self.link.process_id} could not decode this {type_name}: {_one_line(exc)}. "
            "The caller and the worker run different versions of the command's class; "
            "deploy the same version to both."
        )
        logger.error("Answered a command that does not decode as failed: %s", message)
        return CommandResult(
            success=False,
            error=message,
            error_type="CommandDecodeError",
            command_type=type_name.rpartition(".")[2],
            command_id=_uuid(command_id),
        )

    def _crashed(self, command: Command, deliveries: int) -> CommandResult:
        """The failed result of a command whose every delivery ended with its worker dead."""
        message = (
            f"the command crashed {deliveries} workers (each that took it stopped answering "
            f"before it finished); it is not run again (max_deliveries={self.max_deliveries})"
        )
        logger.error("%s %s: %s.", type(command).__name__, command.id, message)
        return failure_result(command, time.perf_counter(), message, "WorkerCrashedError")

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

    async def _run(self, command: Command, parent: Any, entry: _Entry) -> tuple[CommandResult, str]:
        """Run the local handler in a child span of the caller's span; never raises.

        Only the cancellation of the worker's own task propagates (it is shutting down).
        """
        bus = self.link.bus
        command_type = type(command).__name__
        start = time.perf_counter()
        span_token = _current_span.set(parent)
        session_token = _current_session.set(command.session_id)
        timeout = None
        if entry.deadline:
            timeout = max(0.001, (entry.deadline - self.link.server_time_ms()) / 1000)
        tb = ""
        try:
            try:
                handler = bus.command_handler(type(command))
            except HandlerNotFoundError as exc:
                return failure_result(command, start, str(exc), type(exc).__name__), ""
            span = Span(
                bus.emit,
                command_type,
                kind="CHAIN",
                session_id=command.session_id,
                attributes={
                    "llmgine.command.type": command_type,
                    "llmgine.remote.caller": entry.caller,
                },
            )
            async with span:
                try:
                    # Sync handlers run in a handler thread: the loop goes on beating.
                    value = await bus.call_handler(handler, command, timeout)
                except HandlerTimedOut as exc:
                    message = f"{exc} (the caller's timeout)"
                    span.set_status("ERROR", f"TimeoutError: {message}")
                    return failure_result(command, start, message, "TimeoutError"), ""
                except BaseException as exc:
                    if isinstance(exc, asyncio.CancelledError) and cancelled_from_outside():
                        raise
                    message, error_type, tb = describe(exc)
                    span.set_status("ERROR", f"{error_type}: {message}")
                    return failure_result(command, start, message, error_type), tb
                result = as_result(value, command, start)
                if not result.success:
                    span.set_status("ERROR", f"{result.error_type}: {result.error}")
                return result, tb
        finally:
            _current_session.reset(session_token)
            _current_span.reset(span_token)
