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
from llmgine.messages.commands import CommandResult
from llmgine.observability.jsonsafe import safe_str

__all__ = [
    "HandlerTimedOut",
    "as_result",
    "call_command_handler",
    "cancelled_from_outside",
    "describe",
    "failure_result",
]


HANDLER_THREADS = 32
"""Threads for sync command handlers run under a timeout (apart from the loop's executor)."""


class HandlerTimedOut(Exception):
    """The bus's own timeout ended a command handler (not a ``TimeoutError`` it raised)."""

    def __init__(self, timeout: float, *, started: bool = True, overdue: int = 0) -> None:
        if started:
            super().__init__(f"the handler did not finish within {timeout:g} s")
        else:
            super().__init__(
                f"the handler did not start within {timeout:g} s: all {HANDLER_THREADS} threads "
                f"for sync handlers are busy ({overdue} with handlers past their timeout, which "
                "a thread cannot be stopped from); make slow handlers async, or let them return"
            )


class _Run:
    """One sync handler's call in a handler thread."""

    __slots__ = ("arg", "context", "finished", "fn", "future", "loop", "overdue", "started")

    def __init__(self, fn: Callable[[Any], Any], arg: Any) -> None:
        self.fn = fn
        self.arg = arg
        self.context = contextvars.copy_context()
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[Any] = self.loop.create_future()
        self.started = False
        self.finished = False
        self.overdue = False


class _HandlerThreads:
    """The threads of sync handlers with a timeout: at most ``HANDLER_THREADS`` per process.

    Not the loop's default executor: handlers stuck past their timeout keep their
    threads, and must not starve ``asyncio.to_thread`` and ``run_in_executor`` of
    the application (or of the bus's own log and exporters). Daemon threads, unlike
    an executor's: a handler stuck for good does not keep the process from exiting.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[_Run] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads = 0
        self.overdue = 0
        """Handlers still running in a thread past their timeout."""

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> _Run:
        """Run ``fn(arg)`` in a handler thread, in a copy of the caller's context."""
        if self._pid != os.getpid():  # a forked child has none of its parent's threads
            self._reset()
        run = _Run(fn, arg)
        self._work.put(run)
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if self._threads < HANDLER_THREADS:
                    self._threads += 1
                    name = f"llmgine-handler-{self._threads}"
                    threading.Thread(target=self._serve, name=name, daemon=True).start()
        return run

    def _serve(self) -> None:
        while True:
            run = self._work.get()
            with self._lock:
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
                    with self._lock:
                        run.finished = True
                        if run.overdue:
                            self.overdue -= 1
            self._idle.release()

    def timed_out(self, run: _Run, timeout: float) -> HandlerTimedOut:
        """Note that ``run`` passed its ``timeout``; return the error that says so.

        A run that has not started never will (its future is cancelled by then).
        """
        with self._lock:
            if run.started and not run.finished and not run.overdue:
                run.overdue = True
                self.overdue += 1
            overdue = self.overdue
        return HandlerTimedOut(timeout, started=run.started, overdue=overdue)


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


_threads = _HandlerThreads()


def cancelled_from_outside() -> bool:
    """Whether the running task itself is being cancelled (not just a handler's await)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def call_command_handler(
    entry: HandlerEntry, command: Any, timeout: float | None, *, in_thread: bool = False
) -> Any:
    """Run a command handler and return its value; its exceptions propagate.

    With ``timeout`` (or ``in_thread``), a sync handler runs in a handler thread so
    the timeout holds for it too (the thread finishes on its own) and the loop goes
    on meanwhile; the bus's timeout raises :class:`HandlerTimedOut`, a
    ``TimeoutError`` of the handler's own propagates as is.
    """
    if timeout is None:
        if in_thread and not entry.is_async:
            value = await _threads.submit(entry.fn, command).future
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
                run = _threads.submit(entry.fn, command)
                value = await run.future
                if isawaitable(value):
                    value = await value
    except TimeoutError:
        if scope.expired():
            if run is None:
                raise HandlerTimedOut(timeout) from None
            raise _threads.timed_out(run, timeout) from None
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
