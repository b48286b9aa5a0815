"""A thread of its own for a store's blocking calls, so async code never waits on the disk.

``engine.conversations`` runs every call of a store that does I/O (SQLite, Redis) in
one :class:`StoreThread`: the calls run one at a time, in the order they were made,
and the event loop goes on with other work until each one's result comes back. A call
costs a queue put and a ``call_soon_threadsafe`` (about 70 us there and back), less
than half of ``asyncio.to_thread`` (its pool's futures, locks and context copy): a
conversation turn makes two (load the conversation, save the turn).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["StoreThread"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class StoreThread:
    """Runs blocking calls in one daemon thread, started at the first call.

    A call whose caller is cancelled still runs to its end (like ``asyncio.to_thread``);
    :meth:`stop` lets the calls made before it finish, and the next call starts a new
    thread. The thread also ends once this object is garbage (an engine dropped without
    ``aclose``), after the calls already made.

    Args:
        name: The thread's name (as ``threading`` and tracebacks show it).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"StoreThread({self.name!r}, {'running' if self._jobs else 'stopped'})"

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the thread; its result or its exception, here."""
        return await self.submit(fn, *args)

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Start ``fn(*args)`` in the thread now; a future of the running loop gets its result.

        Cancelling the future does not stop the call.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:  # never into the queue of a thread told to stop
            self._queue().put((loop, future, fn, args))
        return future

    def stop(self) -> None:
        """End the thread once the calls already made are done."""
        with self._lock:
            jobs, self._jobs = self._jobs, None
        if jobs is not None:
            jobs.put(None)

    def _queue(self) -> queue.SimpleQueue[_Job | None]:
        """The running thread's queue, or a new thread's (called holding ``_lock``)."""
        if self._jobs is None:
            jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
            threading.Thread(target=_work, args=(jobs,), name=self.name, daemon=True).start()
            weakref.finalize(self, jobs.put, None)  # the thread holds the queue, not self
            self._jobs = jobs
        return self._jobs


def _work(jobs: queue.SimpleQueue[_Job | None]) -> None:
    while (job := jobs.get()) is not None:
        _run(*job)
        del job  # hold no call's arguments while waiting for the next


def _run(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> None:
    try:
        result, error = fn(*args), None
    except BaseException as exc:  # delivered to the caller, whose await raises it
        result, error = None, exc
    try:
        loop.call_soon_threadsafe(_settle, future, result, error)
    except RuntimeError:  # the caller's loop closed meanwhile: no one waits for it
        logger.debug("A store call finished after its event loop closed", exc_info=error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
