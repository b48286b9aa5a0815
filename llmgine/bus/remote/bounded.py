"""Calls to Redis bounded by a caller's deadline, however stalled Redis is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["bounded"]

T = TypeVar("T")


def _leave(task: asyncio.Future[Any]) -> None:
    """Leave a call behind: cancelled, and its outcome retrieved when it comes (no warning)."""
    task.cancel()
    task.add_done_callback(lambda t: None if t.cancelled() else t.exception())


async def bounded(call: Awaitable[T], deadline: float | None) -> T:
    """Await ``call`` until ``deadline`` (``time.monotonic()``) at most, then raise TimeoutError.

    The call runs as a task of its own, left behind when time runs out: a cancel that
    redis-py swallows (in a connection's handshake, with Redis stalled) cannot hold the
    caller past its deadline.
    """
    if deadline is None:
        return await call
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
    except BaseException:
        _leave(task)
        raise
    if not done:
        _leave(task)
        raise TimeoutError
    return task.result()
