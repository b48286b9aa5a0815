"""Calling handlers: every outcome caught, timeouts that mean what they say."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from inspect import isawaitable
from typing import Any

from llmgine.bus.registry import HandlerEntry
from llmgine.errors import HandlerTimedOut
from llmgine.messages.commands import CommandResult
from llmgine.observability.jsonsafe import safe_str

__all__ = [
    "HandlerThreads",
    "HandlerTimedOut",
    "as_result",
    "call_command_handler",
    "cancelled_from_outside",
    "describe",
    "failure_result",
]


HANDLER_THREADS = 32
"""Threads for sync command handlers run under a timeout (apart from the loop's executor)."""


class _Run:
    """One sync handler's call in a handler thread."""

    __slots__ = (
        "arg", "context", "finished", "fn", "future", "loop", "overdue", "pool", "started",
    )  # fmt: skip

    def __init__(self, fn: Callable[[Any], Any], arg: Any, pool: _Pool) -> None:
        self.fn = fn
        self.arg = arg
        self.pool = pool
        self.context = contextvars.copy_context()
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[Any] = self.loop.create_future()
        self.started = False
        self.finished = False
        self.overdue = False


class _Pool:
    """One generation of handler threads: a ``close()`` retires it, a new one follows."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.work: queue.SimpleQueue[_Run | None] = queue.SimpleQueue()  # None: leave
        self.idle = threading.Semaphore(0)
        self.threads = 0
        self.overdue = 0
        """Handlers still running in a thread past their timeout."""

    def serve(self) -> None:
        while (run := self.work.get()) is not None:
            with self.lock:
                start = not run.future.done()  # not cancelled: its timeout has not passed
                run.started = start
            if start:
                try:
                    value = run.context.run(run.fn, run.arg)
                except BaseException as exc:
                    _settle(run, None, exc)
                else:
                    _settle(run, value, None)
                finally:
                    with self.lock:
                        run.finished = True
                        if run.overdue:
                            self.overdue -= 1
            self.idle.release()


class HandlerThreads:
    """The threads of a bus's sync handlers with a timeout: at most ``HANDLER_THREADS``.

    Owned by one bus: no thread exists until a handler needs one, and ``close()``
    (the bus's ``stop()``) lets them end once their handlers return. Not the loop's
    default executor: handlers stuck past their timeout keep their threads, and must
    not starve ``asyncio.to_thread`` and ``run_in_executor`` of the application (or
    of the bus's own log and exporters). Daemon threads, unlike an executor's: a
    handler stuck for good does not keep the process from exiting.
    """

    def __init__(self) -> None:
        self._pool = _Pool()

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> _Run:
        """Run ``fn(arg)`` in a handler thread, in a copy of the caller's context."""
        pool = self._pool
        if pool.pid != os.getpid():  # a forked child has none of its parent's threads
            pool = self._pool = _Pool()
        run = _Run(fn, arg, pool)
        pool.work.put(run)
        if not pool.idle.acquire(blocking=False):
            with pool.lock:
                if pool.threads < HANDLER_THREADS:
                    pool.threads += 1
                    name = f"llmgine-handler-{pool.threads}"
                    threading.Thread(target=pool.serve, name=name, daemon=True).start()
        return run

    def close(self) -> None:
        """Let every thread end once its handler (if any) returns; later calls start anew."""
        pool, self._pool = self._pool, _Pool()
        with pool.lock:
            for _ in range(pool.threads):
                pool.work.put(None)

    def timed_out(self, run: _Run, timeout: float) -> HandlerTimedOut:
        """Note that ``run`` passed its ``timeout``; return the error that says so.

        A run that has not started never will (its future is cancelled by then).
        """
        pool = run.pool
        with pool.lock:
            if run.started and not run.finished and not run.overdue:
                run.overdue = True
                pool.overdue += 1
            overdue = pool.overdue
        if run.started:
            return HandlerTimedOut(timeout)
        return HandlerTimedOut(
            timeout,
            f"the handler did not start within {timeout:g} s: all {HANDLER_THREADS} threads "
            f"for sync handlers are busy ({overdue} with handlers past their timeout, which "
            "a thread cannot be stopped from); make slow handlers async, or let them return",
        )


def _settle(run: _Run, value: Any, exc: BaseException | None) -> None:
    """Hand a handler thread's outcome to the waiting loop (from the thread)."""

    def settle() -> None:
        if run.future.done():
            return
        if exc is None:
            run.future.set_result(value)
        elif isinstance(exc, StopIteration):  # a future cannot hold one
            run.future.set_exception(RuntimeError(f"the handler raised {exc!r}"))
        else:
            run.future.set_exception(exc)

    with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
        run.loop.call_soon_threadsafe(settle)


def cancelled_from_outside() -> bool:
    """Whether the running task itself is being cancelled (not just a handler's await)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def call_command_handler(
    entry: HandlerEntry,
    command: Any,
    timeout: float | None,
    threads: HandlerThreads,
    *,
    in_thread: bool = False,
) -> Any:
    """Run a command handler and return its value; its exceptions propagate.

    With ``timeout`` (or ``in_thread``), a sync handler runs in a handler thread so
    the timeout holds for it too (the thread finishes on its own) and the loop goes
    on meanwhile (one of ``threads``); the bus's timeout raises
    :class:`HandlerTimedOut`, a ``TimeoutError`` of the handler's own propagates as is.
    """
    if timeout is None:
        if entry.is_async:
            return await entry.fn(command)
        if in_thread:
            value = await threads.submit(entry.fn, command).future
        else:
            value = entry.fn(command)
        return await value if isawaitable(value) else value
    scope = asyncio.timeout(timeout)
    run: _Run | None = None
    try:
        async with scope:
            if entry.is_async:
                value = await entry.fn(command)
            else:
                run = threads.submit(entry.fn, command)
                value = await run.future
                if isawaitable(value):
                    value = await value
    except HandlerTimedOut:
        raise  # a remote handler's (a TimeoutError too): it says what timed out already
    except TimeoutError:
        if scope.expired():
            if run is None:
                raise HandlerTimedOut(timeout) from None
            raise threads.timed_out(run, timeout) from None
        raise
    if scope.expired():  # the handler swallowed the cancellation and returned anyway
        raise HandlerTimedOut(timeout)
    return value


def as_result(value: Any, command: Any, start: float) -> CommandResult:
    """The ``CommandResult`` of a handler that returned ``value`` (``start``: a ``perf_counter()``).

    A ``CommandResult`` is completed (command id and type, duration) where it left
    them out; any other value is the ``result`` of a successful one.
    """
    if isinstance(value, CommandResult):
        value.command_id = value.command_id or command.id
        value.command_type = value.command_type or type(command).__name__
        if value.duration_ms is None:
            value.duration_ms = (time.perf_counter() - start) * 1000.0
        return value
    return CommandResult(
        success=True,
        result=value,
        command_id=command.id,
        command_type=type(command).__name__,
        duration_ms=(time.perf_counter() - start) * 1000.0,
    )


def failure_result(command: Any, start: float, error: str, error_type: str) -> CommandResult:
    """The ``CommandResult`` of a command that failed; ``start`` is its ``perf_counter()``."""
    return CommandResult(
        success=False,
        error=error,
        error_type=error_type,
        command_id=command.id,
        command_type=type(command).__name__,
        duration_ms=(time.perf_counter() - start) * 1000.0,
    )


def describe(exc: BaseException) -> tuple[str, str, str]:
    """Return ``(message, type name, traceback text)`` of ``exc``; never raises."""
    message = safe_str(exc) or type(exc).__name__
    try:
        tb = "".join(traceback.format_exception(exc))
    except Exception:
        tb = f"{type(exc).__name__}: {message}\n"
    return message, type(exc).__name__, tb
