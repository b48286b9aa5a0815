"""Commands across processes, the worker's side: take commands, run them, answer.

A worker reads the stream of each command type it handles through the group
``workers`` (so exactly one worker takes each entry) and runs the handler in a span
that is a child of the caller's span. Then one script, in one round trip, records the
reply under the command's id, acknowledges the entry and sends the reply to the
caller; when a reply was recorded already (the command ran elsewhere, or its caller
abandoned it) nothing is sent, so a command completes at most once.

A new entry (read with ``>``) was never delivered before, so it runs without a check:
a caller that gives up deletes its entry before anyone reads it, or marks it abandoned
so that a run already under way is not answered. A worker renews its claim on the
commands it runs at each heartbeat; an entry left idle longer than ``claim_after``
(its worker died) is taken over by another worker (``XAUTOCLAIM``), which first asks
the script whether a reply was recorded: if so it sends that reply (or, for an
abandoned command, nothing) instead of running the command again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from pydantic_core import to_json
from redis.exceptions import ResponseError

from llmgine.bus.handlers import call_command_handler, describe, failure_result
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
# ARGV: the reply, its TTL, the entry id, the group, the reply stream's TTL.
FINISH = """
local stored = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
redis.pcall('XACK', KEYS[2], ARGV[4], ARGV[3])
if not stored then return 0 end
redis.call('XADD', KEYS[3], '*', 'r', ARGV[1])
if redis.call('TTL', KEYS[3]) < 0 then redis.call('EXPIRE', KEYS[3], ARGV[5]) end
return 1
"""
"""Record the reply (unless one is), acknowledge the entry, answer: one round trip."""

# KEYS as FINISH. ARGV: the entry id, the group, the abandoned marker.
REPLAY = """
local recorded = redis.call('GET', KEYS[1])
if not recorded then return 0 end
redis.pcall('XACK', KEYS[2], ARGV[2], ARGV[1])
if recorded ~= ARGV[3] then redis.call('XADD', KEYS[3], '*', 'r', recorded) end
return 1
"""
"""For a taken-over entry: if a reply was recorded, send it again and acknowledge."""


def _reply(
    command: Command, result: CommandResult, tb: str, worker: str, events_upto: bytes | None
) -> bytes:
    """The reply's JSON: the result serialized once, straight into the payload.

    ``events_upto`` is the id of the last event this process sent while it ran the
    command (what its handler published), if any.
    """
    fields: dict[str, Any] = {"command_id": str(command.id), "traceback": tb, "worker": worker}
    if events_upto is not None:
        fields["events_upto"] = events_upto.decode()
    head = orjson.dumps(fields)
    return b"".join(
        (head[:-1], b',"result":', to_json(result, fallback=safe_repr, inf_nan_mode="null"), b"}")
    )


class CommandRunner:
    """The worker's side: takes commands from the streams and runs their handlers."""

    def __init__(self, link: RedisLink, max_concurrency: int) -> None:
        self.link = link
        self.max_concurrency = max_concurrency
        self.completed = 0
        """Commands this process ran to completion for other processes."""
        self._running: dict[asyncio.Task[None], tuple[str, bytes]] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._classes: dict[str, type[Command]] = {}
        self._finish = link.redis.register_script(FINISH)
        self._replay = link.redis.register_script(REPLAY)

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
                    self._start(stream, entry_id, fields, claimed=False)
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
            # Only the ids: Redis 6.2 gives no id for an entry deleted since (abandoned).
            ids = await redis.xautoclaim(
                stream, WORKERS, link.process_id, min_idle, "0-0", count=room, justid=True
            )
            if not ids:
                continue
            pipe = redis.pipeline(transaction=False)
            for entry_id in ids:
                pipe.xrange(stream, entry_id, entry_id, count=1)
            for entry_id, found in zip(ids, await pipe.execute(), strict=True):
                logger.warning(
                    "Took over command entry %s of %s: its worker stopped answering.",
                    entry_id.decode(),
                    key,
                )
                self._start(stream, entry_id, found[0][1] if found else None, claimed=True)

    def _start(self, stream: bytes | str, entry_id: bytes, fields: Any, *, claimed: bool) -> None:
        name = stream.decode() if isinstance(stream, bytes) else stream
        work = self._handle(name, entry_id, fields or {}, claimed=claimed)
        task = asyncio.get_running_loop().create_task(work)
        self._running[task] = (name, entry_id)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._room.set()
        if not task.cancelled() and task.exception() is not None:
            logger.error("A remote command failed in the worker.", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for the commands running here to finish and be answered."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def _handle(self, stream: str, entry_id: bytes, fields: Any, *, claimed: bool) -> None:
        link = self.link
        redis = link.redis
        line = fields.get(b"m")
        reply_to = fields.get(b"r")
        if line is None or reply_to is None:
            await redis.xack(stream, WORKERS, entry_id)  # a deleted or foreign entry
            return
        try:
            command, parent = self._load(stream, line)
        except (LogFormatError, ValueError) as exc:
            logger.error("Dropped a command from the shared bus that does not decode: %s", exc)
            await redis.xack(stream, WORKERS, entry_id)
            return
        result_key = link.keys.result(str(command.id))
        keys = [result_key, stream, reply_to]
        if claimed and await self._replay(keys, [entry_id, WORKERS, ABANDONED]):
            return  # it ran (or its caller gave up): never run it again
        caller = fields.get(b"o", b"").decode(errors="replace")
        version = int(fields.get(b"v", b"0") or 0)
        if version > link.listeners.known_version(caller):
            await link.listeners.refresh_one(caller)  # it registered handlers since we looked
        sent = link.events.sent
        result, tb = await self._run(command, parent, caller)
        # What the handler published goes out before its reply, and the reply says up to
        # where: the caller reads that far before its execute() returns.
        await link.flush(link.claim_after)
        upto = link.events.last_sent if link.events.sent > sent else None
        reply = _reply(command, result, tb, link.process_id, upto)
        if await self._finish(keys, [reply, RESULT_TTL, entry_id, WORKERS, REPLY_TTL]):
            self.completed += 1
        else:
            logger.warning(
                "Command %s was answered elsewhere already or abandoned by its caller; "
                "this run's result is dropped.",
                command.id,
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

    async def _run(self, command: Command, parent: Any, caller: str) -> tuple[CommandResult, str]:
        """Run the local handler in a child span of the caller's span; never raises."""
        bus = self.link.bus
        command_type = type(command).__name__
        start = time.perf_counter()
        span_token = _current_span.set(parent)
        session_token = _current_session.set(command.session_id)
        tb = ""
        try:
            try:
                entry = bus._registry.command_handler(type(command))
            except HandlerNotFoundError as exc:
                return failure_result(command, start, str(exc), type(exc).__name__), ""
            span = Span(
                bus._emit,
                command_type,
                kind="CHAIN",
                session_id=command.session_id,
                attributes={
                    "llmgine.command.type": command_type,
                    "llmgine.remote.caller": caller,
                },
            )
            async with span:
                try:
                    value = await call_command_handler(entry, command, None)
                except Exception as exc:
                    message, error_type, tb = describe(exc)
                    span.set_status("ERROR", f"{error_type}: {message}")
                    return failure_result(command, start, message, error_type), tb
                result = value if isinstance(value, CommandResult) else None
                if result is None:
                    result = CommandResult(success=True, result=value)
                result.command_id = result.command_id or command.id
                result.command_type = result.command_type or command_type
                if result.duration_ms is None:
                    result.duration_ms = (time.perf_counter() - start) * 1000.0
                if not result.success:
                    span.set_status("ERROR", f"{result.error_type}: {result.error}")
                return result, tb
        finally:
            _current_session.reset(session_token)
            _current_span.reset(span_token)
