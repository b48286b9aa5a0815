"""Calling handlers: every outcome caught, timeouts that mean what they say."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from inspect import isawaitable
from typing import Any

from llmgine.bus.registry import HandlerEntry
from llmgine.observability.jsonsafe import safe_str

__all__ = [
    "HandlerTimedOut",
    "call_command_handler",
    "cancelled_from_outside",
    "describe",
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

    __slots__ = ("finished", "overdue", "started")

    def __init__(self) -> None:
        self.started = False
        self.finished = False
        self.overdue = False


class _HandlerThreads:
    """The threads of sync handlers with a timeout: one pool per process, made on first use.

    Not the loop's default executor: handlers stuck past their timeout keep their
    threads, and must not starve ``asyncio.to_thread`` and ``run_in_executor`` of
    the application (or of the bus's own log and exporters).
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self.overdue = 0
        """Handlers still running in a thread past their timeout."""

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> tuple[_Run, asyncio.Future[Any]]:
        """Run ``fn(arg)`` in a handler thread, in a copy of the caller's context."""
        if self._pool is None or self._pid != os.getpid():  # a forked child has no threads
            self._pool = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="llmgine-handler")
            self._pid = os.getpid()
        context = contextvars.copy_context()
        run = _Run()

        def work() -> Any:
            run.started = True
            try:
                return context.run(fn, arg)
            finally:
                with self._lock:
                    run.finished = True
                    if run.overdue:
                        self.overdue -= 1

        return run, asyncio.get_running_loop().run_in_executor(self._pool, work)

    def timed_out(self, run: _Run, timeout: float) -> HandlerTimedOut:
        """Note that ``run`` passed its ``timeout``; return the error that says so."""
        with self._lock:
            if run.started and not run.finished and not run.overdue:
                run.overdue = True
                self.overdue += 1
            overdue = self.overdue
        return HandlerTimedOut(timeout, started=run.started, overdue=overdue)


_threads = _HandlerThreads()


def cancelled_from_outside() -> bool:
    """Whether the running task itself is being cancelled (not just a handler's await)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def call_command_handler(entry: HandlerEntry, command: Any, timeout: float | None) -> Any:
    """Run a command handler and return its value; its exceptions propagate.

    With ``timeout``, a sync handler runs in a handler thread so the timeout holds
    for it too (the thread finishes on its own); the bus's timeout raises
    :class:`HandlerTimedOut`, a ``TimeoutError`` of the handler's own propagates as is.
    """
    if timeout is None:
        value = entry.fn(command)
        return await value if isawaitable(value) else value
    scope = asyncio.timeout(timeout)
    run: _Run | None = None
    try:
        async with scope:
            if entry.is_async:
                value = await entry.fn(command)
            else:
                run, future = _threads.submit(entry.fn, command)
                value = await future
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


def describe(exc: BaseException) -> tuple[str, str, str]:
    """Return ``(message, type name, traceback text)`` of ``exc``; never raises."""
    message = safe_str(exc) or type(exc).__name__
    try:
        tb = "".join(traceback.format_exception(exc))
    except Exception:
        tb = f"{type(exc).__name__}: {message}\n"
    return message, type(exc).__name__, tb
