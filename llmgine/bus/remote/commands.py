"""Commands across processes: the caller's side and the worker's side.

The caller adds the command's envelope to the stream of its type and waits for the
reply on its own reply stream. A worker reads the stream through the group
``workers`` (so exactly one worker takes each entry), runs the handler in a span
that is a child of the caller's span, records the reply under the command's id and
acknowledges the entry in one transaction, then answers.

A worker renews its claim on the commands it runs at each heartbeat; an entry left
idle longer than ``claim_after`` (its worker died) is taken over by another worker
(``XAUTOCLAIM``). A recorded reply is never run again: the taker sends the recorded
reply instead, so a command runs to completion at most once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from pydantic_core import to_json

from llmgine.bus.handlers import call_command_handler, describe
from llmgine.bus.registry import HandlerEntry
from llmgine.bus.remote.keys import WORKERS, type_key
from llmgine.bus.session import _current_session
from llmgine.errors import HandlerNotFoundError, LogFormatError
from llmgine.messages.commands import Command, CommandResult
from llmgine.observability.codec import decode, encode
from llmgine.observability.jsonsafe import safe_repr
from llmgine.observability.spans import Span, _current_span, current_span

if TYPE_CHECKING:
    from llmgine.bus.remote.link import RedisLink

__all__ = ["CommandRunner", "RemoteCaller", "raise_if_cancelled"]

logger = logging.getLogger(__name__)

ABANDONED = b'{"abandoned":true}'
"""The recorded reply of a command its caller stopped waiting for: never run later."""

RESULT_TTL = 24 * 3600
"""Seconds a command's recorded reply is kept (its idempotency window)."""


def raise_if_cancelled() -> None:
    """End the running loop if its task was cancelled.

    redis-py may swallow the ``CancelledError`` of a read it was in (it then drops the
    connection); the link's loops call this each turn so a cancel still ends them.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _reply(command: Command, result: CommandResult, tb: str, worker: str) -> bytes:
    payload = {
        "command_id": str(command.id),
        "result": orjson.loads(to_json(result, fallback=safe_repr)),
        "traceback": tb,
        "worker": worker,
    }
    return orjson.dumps(payload, default=safe_repr)


class RemoteCaller:
    """The caller's side: sends commands and matches the replies that come back."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.reply_stream = link.keys.reply(link.process_id)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def entry(self, command_type: type[Command]) -> HandlerEntry:
        """Return a handler entry that runs ``command_type`` remotely.

        Raises:
            HandlerNotFoundError: No connected process handles the type.
        """
        if not await self.link.handled_elsewhere(command_type):
            raise HandlerNotFoundError(
                f"No handler for {command_type.__name__}, here or in any process connected to "
                f"the shared bus (namespace {self.link.keys.namespace!r}). Register one with "
                f"bus.register_command_handler({command_type.__name__}, handler), or start a "
                "worker that does: python -m llmgine worker MODULE:FUNCTION --redis URL."
            )

        async def run_remotely(command: Command) -> CommandResult:
            return await self.send(command)

        key = type_key(command_type)
        return HandlerEntry(
            fn=run_remotely,
            key=("remote", key),
            name=f"remote:{key}",
            is_async=True,
            order=-1,
            owner=None,
        )

    async def send(self, command: Command) -> CommandResult:
        """Send ``command`` to the process that handles it and wait for its result."""
        link = self.link
        command_id = str(command.id)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = future
        line = encode("command", command, current_span())
        stream = link.keys.command(type_key(type(command)))
        answered = False
        try:
            await link.redis.xadd(
                stream, {b"m": line, b"r": self.reply_stream.encode(), b"o": link.process_id}
            )
            while not future.done():
                await asyncio.wait({future}, timeout=link.heartbeat * 2)
                if future.done() or await self._still_handled(type(command)):
                    continue
                raise HandlerNotFoundError(
                    f"Every process that handled {type(command).__name__} left the shared bus "
                    "before answering; the command was not run to completion."
                )
            reply = future.result()
            answered = True
        finally:
            self._waiting.pop(command_id, None)
            if not answered:
                asyncio.get_running_loop().create_task(self._abandon(command_id))
        result = CommandResult.model_validate(reply["result"])
        result.metadata = {**result.metadata, "llmgine.worker": reply.get("worker")}
        if reply.get("traceback"):
            result.metadata["llmgine.traceback"] = reply["traceback"]
        return result

    async def _still_handled(self, command_type: type[Command]) -> bool:
        try:
            return await self.link.handled_elsewhere(command_type, fresh=True)
        except Exception:
            return True  # Redis unreachable: the link reconnects; the caller's timeout bounds it

    async def _abandon(self, command_id: str) -> None:
        """Mark a command its caller gave up on, so no worker runs it later."""
        try:
            await self.link.redis.set(
                self.link.keys.result(command_id), ABANDONED, nx=True, ex=RESULT_TTL
            )
        except Exception as exc:
            logger.warning("Could not mark abandoned command %s: %s", command_id, exc)

    async def reply_loop(self) -> None:
        """Read the replies sent to this process and hand each to its waiting caller."""
        redis = self.link.blocking
        block = int(self.link.heartbeat * 1000)
        while True:
            raise_if_cancelled()
            answer = await redis.xread({self.reply_stream: "0-0"}, count=100, block=block)
            if not answer:
                continue
            ids = []
            for entry_id, fields in answer[0][1]:
                ids.append(entry_id)
                try:
                    reply = orjson.loads(fields[b"r"])
                except (KeyError, TypeError, orjson.JSONDecodeError):
                    logger.warning("Skipped a reply that does not decode.")
                    continue
                future = self._waiting.get(reply.get("command_id", ""))
                if future is not None and not future.done():
                    future.set_result(reply)
            await redis.xdel(self.reply_stream, *ids)

    def fail_waiting(self, why: str) -> None:
        """Wake every waiting caller with a failure saying ``why``."""
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError(why))


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
            streams = {link.keys.command(k): ">" for k in link.local_command_types()}
            if not streams:
                await asyncio.sleep(link.heartbeat)
                continue
            answer = await link.blocking.xreadgroup(
                WORKERS, link.process_id, streams, count=room, block=block
            )
            for stream, entries in answer or ():
                for entry_id, fields in entries:
                    self._start(stream, entry_id, fields, claimed=False)

    async def renew_and_claim(self) -> None:
        """Renew the claims on running commands; take over those a dead worker left."""
        link = self.link
        redis = link.redis
        by_stream: dict[bytes, list[bytes]] = {}
        for stream, entry_id in self._running.values():
            by_stream.setdefault(stream.encode(), []).append(entry_id)
        for stream_key, ids in by_stream.items():
            await redis.xclaim(stream_key, WORKERS, link.process_id, 0, ids, justid=True)
        if link._closing:
            return
        min_idle = int(link.claim_after * 1000)
        for key in link.local_command_types():
            room = self.max_concurrency - len(self._running)
            if room <= 0:
                return
            stream = link.keys.command(key)
            answer = await redis.xautoclaim(
                stream, WORKERS, link.process_id, min_idle, "0-0", count=room
            )
            for entry_id, fields in answer[1]:
                logger.warning(
                    "Took over command entry %s of %s: its worker stopped answering.",
                    entry_id.decode(),
                    key,
                )
                self._start(stream.encode(), entry_id, fields, claimed=True)

    def _start(self, stream: bytes | str, entry_id: bytes, fields: Any, *, claimed: bool) -> None:
        name = stream.decode() if isinstance(stream, bytes) else stream
        task = asyncio.get_running_loop().create_task(self._handle(name, entry_id, fields or {}))
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

    async def _handle(self, stream: str, entry_id: bytes, fields: Any) -> None:
        link = self.link
        redis = link.redis
        line = fields.get(b"m")
        reply_to = fields.get(b"r")
        if line is None or reply_to is None:
            await redis.xack(stream, WORKERS, entry_id)  # a deleted or foreign entry
            return
        try:
            envelope = decode(line)
            command = envelope.to_message()
        except LogFormatError as exc:
            logger.error("Dropped a command from the shared bus that does not decode: %s", exc)
            await redis.xack(stream, WORKERS, entry_id)
            return
        assert isinstance(command, Command)
        result_key = link.keys.result(str(command.id))
        # A recorded reply means it ran (or its caller gave up): never run it again.
        recorded = await redis.get(result_key)
        if recorded is not None:
            if recorded != ABANDONED:
                await redis.xadd(reply_to, {b"r": recorded})
            await redis.xack(stream, WORKERS, entry_id)
            return
        result, tb = await self._run(command, envelope.span_context(), fields.get(b"o", b""))
        reply = _reply(command, result, tb, link.process_id)
        pipe = redis.pipeline(transaction=True)
        pipe.set(result_key, reply, nx=True, ex=RESULT_TTL)
        pipe.xack(stream, WORKERS, entry_id)
        stored, _ = await pipe.execute()
        if stored:
            await redis.xadd(reply_to, {b"r": reply})
            self.completed += 1
        else:
            logger.warning(
                "Command %s was answered elsewhere already; this run's result is dropped.",
                command.id,
            )

    async def _run(self, command: Command, parent: Any, caller: bytes) -> tuple[CommandResult, str]:
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
                return self._failure(command, start, str(exc), type(exc).__name__), ""
            span = Span(
                bus._emit,
                command_type,
                kind="CHAIN",
                session_id=command.session_id,
                attributes={
                    "llmgine.command.type": command_type,
                    "llmgine.remote.caller": caller.decode(errors="replace"),
                },
            )
            async with span:
                try:
                    value = await call_command_handler(entry, command, None)
                except Exception as exc:
                    message, error_type, tb = describe(exc)
                    span.set_status("ERROR", f"{error_type}: {message}")
                    return self._failure(command, start, message, error_type), tb
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

    @staticmethod
    def _failure(command: Command, start: float, error: str, error_type: str) -> CommandResult:
        return CommandResult(
            success=False,
            error=error,
            error_type=error_type,
            command_id=command.id,
            command_type=type(command).__name__,
            duration_ms=(time.perf_counter() - start) * 1000.0,
        )
