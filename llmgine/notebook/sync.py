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
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

__all__ = ["call_later", "cancel", "run_sync", "settle_after_interrupt", "spawn"]

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


def settle_after_interrupt(cleanup: Callable[[], Coroutine[Any, Any, Any]], rounds: int) -> bool:
    """After a ``KeyboardInterrupt`` escaped :func:`run_sync`: run ``cleanup()`` to its end.

    The interrupt may leave asyncio unsettled: a task it went through raises it out of
    the loop once more as it unwinds, and a stop it left scheduled ends the next wait
    early. Each is one more round (a new ``cleanup()``), ``rounds`` at most.

    Returns:
        Whether a round ran ``cleanup()`` to its end.
    """
    for _ in range(rounds):
        try:
            run_sync(cleanup())
            return True
        except KeyboardInterrupt:
            continue
        except RuntimeError as exc:
            if "stopped before Future completed" not in str(exc):
                raise
    return False


def _loop() -> asyncio.AbstractEventLoop:
    from IPython.core.async_helpers import get_asyncio_loop

    # The running loop in a kernel, else IPython's own persistent loop.
    return cast(asyncio.AbstractEventLoop, get_asyncio_loop())


def _running() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def spawn(
    coroutine: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop | None = None
) -> asyncio.Future[T]:
    """Run ``coroutine`` as a task on ``loop`` (default: the kernel's), without waiting for it.

    Widget callbacks use this so a long LLM call never blocks the kernel. JupyterLab may
    deliver a widget's click in a kernel subshell, a thread with its own loop: the task is
    then handed to ``loop`` thread-safely, and the returned future belongs to the caller's
    loop (await it there; cancel it with :func:`cancel`).
    """
    target = loop or _loop()
    here = _running()
    if here is target or (here is None and not target.is_running()):
        return target.create_task(coroutine)
    future = asyncio.run_coroutine_threadsafe(coroutine, target)
    return asyncio.wrap_future(future, loop=here or target)


def cancel(future: asyncio.Future[Any]) -> None:
    """Cancel ``future`` from any thread (a Stop button may be clicked in another subshell)."""
    owner = future.get_loop()
    if owner is _running():
        future.cancel()
    else:
        owner.call_soon_threadsafe(future.cancel)


def call_later(delay: float, callback: Any) -> None:
    """Call ``callback()`` after ``delay`` seconds on the kernel's loop."""
    _loop().call_later(delay, callback)
