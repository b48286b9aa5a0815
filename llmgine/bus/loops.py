"""Calls between event loops: the bus runs on one loop and may be used from others."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from llmgine.errors import BusStateError

__all__ = ["call_on", "running_loop"]

T = TypeVar("T")

_POLL = 0.25  # how often a cross-loop wait checks that the bus's loop still runs


def running_loop() -> asyncio.AbstractEventLoop | None:
    """Return the running event loop, or ``None`` outside one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _not_running(what: str) -> BusStateError:
    return BusStateError(
        f"{what} must run on the bus's event loop, which is open but not running (as in a "
        "plain IPython terminal between cells); call it from that loop, e.g. in a cell, "
        "or keep the loop running."
    )


async def call_on(
    loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T], what: str
) -> T:
    """Run ``coroutine`` on ``loop`` (another thread's) and wait for it from this loop.

    Never blocks forever on a loop that is open but not running: that fails at
    once, or as soon as the loop stops while waiting, with a ``BusStateError``.
    """
    if not loop.is_running():
        coroutine.close()
        raise _not_running(what)
    future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    waiter = asyncio.wrap_future(future)
    try:
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=_POLL)
            if done:
                return waiter.result()
            if not loop.is_running():
                raise _not_running(what)
    finally:
        if not future.done():
            future.cancel()
