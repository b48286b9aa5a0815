"""Calling handlers: every outcome caught, timeouts that mean what they say."""

from __future__ import annotations

import asyncio
import traceback
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


class HandlerTimedOut(Exception):
    """The bus's own timeout ended a command handler (not a ``TimeoutError`` it raised)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"the handler did not finish within {timeout:g} s")


def cancelled_from_outside() -> bool:
    """Whether the running task itself is being cancelled (not just a handler's await)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def call_command_handler(entry: HandlerEntry, command: Any, timeout: float | None) -> Any:
    """Run a command handler and return its value; its exceptions propagate.

    With ``timeout``, a sync handler runs in a worker thread so the timeout holds
    for it too (the thread finishes on its own); the bus's timeout raises
    :class:`HandlerTimedOut`, a ``TimeoutError`` of the handler's own propagates as is.
    """
    if timeout is None:
        value = entry.fn(command)
        return await value if isawaitable(value) else value
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            if entry.is_async:
                value = await entry.fn(command)
            else:
                value = await asyncio.to_thread(entry.fn, command)
                if isawaitable(value):
                    value = await value
    except TimeoutError:
        if scope.expired():
            raise HandlerTimedOut(timeout) from None
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
