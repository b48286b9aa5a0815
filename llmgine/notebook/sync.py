"""The one place that runs coroutines from synchronous code (magics, widget callbacks).

Inside a Jupyter kernel a loop is already running (the kernel's), so waiting on a
coroutine needs a re-entrant loop: nest-asyncio is applied to that loop, lazily,
the first time it is needed. Without a running loop (a plain IPython shell), the
coroutine runs on IPython's own persistent loop, the one its ``await`` uses, so
the bus keeps a single home. Nothing else in llmgine touches event loops.

nest-asyncio comes from ``nest-asyncio2``, the maintained fork of the archived
``nest-asyncio`` (same API; ipykernel >= 7.3 depends on it; the original breaks on
Python 3.14).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

__all__ = ["call_later", "run_sync", "spawn"]

T = TypeVar("T")

_patched: set[int] = set()


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion from synchronous code and return its result."""
    from IPython.core.async_helpers import get_asyncio_loop

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = cast(asyncio.AbstractEventLoop, get_asyncio_loop())
        return loop.run_until_complete(coroutine)
    if id(loop) not in _patched:
        import nest_asyncio2

        nest_asyncio2.apply(loop)
        _patched.add(id(loop))
    return loop.run_until_complete(coroutine)


def _loop() -> asyncio.AbstractEventLoop:
    from IPython.core.async_helpers import get_asyncio_loop

    # The running loop in a kernel, else IPython's own persistent loop.
    return cast(asyncio.AbstractEventLoop, get_asyncio_loop())


def spawn(coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run ``coroutine`` as a task on the kernel's loop, without waiting for it.

    Widget callbacks use this so a long LLM call never blocks the kernel.
    """
    return _loop().create_task(coroutine)


def call_later(delay: float, callback: Any) -> None:
    """Call ``callback()`` after ``delay`` seconds on the kernel's loop."""
    _loop().call_later(delay, callback)
