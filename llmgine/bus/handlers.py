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

    def __init__(self, timeout: float, *, started: bool = True) -> None:
        if started:
            super().__init__(f"the handler did not finish within {timeout:g} s")
        else:
            super().__init__(
                f"the handler did not start within {timeout:g} s: all {HANDLER_THREADS} threads "
                "for sync handlers are busy with handlers that timed out earlier and still run "
                "(a thread cannot be stopped); make those handlers return, or make them async"
            )


class _HandlerThreads:
    """The threads of sync handlers with a timeout: one pool per process, made on first use.

    Not the loop's default executor: handlers stuck past their timeout keep their
    threads, and must not starve ``asyncio.to_thread`` and ``run_in_executor`` of
    the application (or of the bus's own log and exporters).
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0

    def submit(self, fn: Callable[[Any], Any], arg: Any, started: threading.Event) -> Any:
        """Run ``fn(arg)`` in a handler thread, in a copy of the caller's context."""
        if self._pool is None or self._pid != os.getpid():  # a forked child has no threads
            self._pool = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="llmgine-handler")
            self._pid = os.getpid()
        context = contextvars.copy_context()

        def run() -> Any:
            started.set()
            return context.run(fn, arg)

        return asyncio.get_running_loop().run_in_executor(self._pool, run)


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
    started = threading.Event()
    try:
        async with scope:
            if entry.is_async:
                value = await entry.fn(command)
            else:
                value = await _threads.submit(entry.fn, command, started)
                if isawaitable(value):
                    value = await value
    except TimeoutError:
        if scope.expired():
            raise HandlerTimedOut(timeout, started=started.is_set()) from None
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
