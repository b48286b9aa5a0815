"""Where published events wait for their handlers: a bounded queue with fair waiting.

Publishers wait for room when the queue is full; each freed slot wakes exactly one
waiter, the one that waited longest (no herd), even when it waits on another
thread's event loop. So that nothing deadlocks: publishers inside a running handler,
or in a task it started while it runs, never wait (see :func:`in_handler`); when the
consumer makes no progress for ``stall_timeout`` seconds (it may be waiting for a
publisher in a way nothing can see), the oldest waiter adds its item anyway, one
per period; publishers from another thread never wait while the bus's loop is not
running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections import deque
from contextvars import ContextVar
from typing import Generic, TypeVar

from llmgine.bus.loops import running_loop
from llmgine.errors import ConfigurationError

__all__ = ["EventQueue", "delivering", "in_handler"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


NOT_DELIVERING: list[bool] = [False]
"""The value of :data:`delivering` outside every delivery (never changed)."""

delivering: ContextVar[list[bool]] = ContextVar("llmgine_delivering", default=NOT_DELIVERING)
"""Whether the delivery whose handlers run in this context still runs: ``[True]`` until it ends.

Each delivery sets a fresh one-item list and sets its item to ``False`` when its
handlers are done. Tasks a handler starts copy the context, so they hold the same
list and see their delivery end. A list rather than a number in a set of running
ones: it is set for every event delivered, and this is the cheapest mark to make,
look at and end.
"""


def in_handler() -> bool:
    """Whether this runs in a handler, or in a task a handler started and still runs beside.

    Once the handler has returned, the tasks it left behind are ordinary
    publishers again (they wait for room), since no handler waits for them.
    """
    return delivering.get()[0]


class _Waiter:
    """A publisher waiting for room, on its own event loop."""

    __slots__ = ("future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False


class EventQueue(Generic[T]):
    """A FIFO of items with a bound that publishers respect.

    ``put_nowait`` always adds; ``await reserve()`` first waits for room. The
    consumer takes items with ``pop`` and waits for more with ``wait_for_item``.

    Args:
        maxsize: Items queued before ``reserve()`` waits.
        stall_timeout: Seconds a waiter tolerates no progress before it adds anyway.
    """

    def __init__(self, maxsize: int, *, stall_timeout: float = 1.0) -> None:
        if maxsize < 1:
            raise ConfigurationError(f"max_queue_size must be at least 1; got {maxsize}.")
        self.maxsize = maxsize
        self.stall_timeout = stall_timeout
        self.popped = 0
        """Items taken so far: how waiters see progress."""
        self.stalls = 0
        """Waits that gave up for lack of progress."""
        self._items: deque[T] = deque()
        self._waiters: deque[_Waiter] = deque()
        self._granted = 0
        self._lock = threading.Lock()
        self._consumer: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        # Loop -> items popped when its watchdog last looked (weak: a closed loop may go).
        self._watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = (
            weakref.WeakKeyDictionary()
        )

    def __len__(self) -> int:
        return len(self._items)

    def is_full(self) -> bool:
        """Whether a new publisher would have to wait."""
        return bool(self._waiters) or len(self._items) + self._granted >= self.maxsize

    def put_nowait(self, item: T) -> None:
        """Add ``item`` now, whatever the bound; wake the consumer."""
        self._items.append(item)
        if self._consumer is not None:
            self.wake()

    def wake(self) -> None:
        """Wake the consumer if it waits for an item (from any thread)."""
        consumer = self._consumer
        if consumer is None:
            return
        self._consumer = None
        loop, future = consumer
        if loop is running_loop():
            if not future.done():
                future.set_result(None)
        elif not loop.is_closed():  # a consumer whose loop is gone waits for nothing
            loop.call_soon_threadsafe(_resolve, future)

    async def reserve(self, *, bus_loop_running: bool = True) -> None:
        """Wait until there is room for one more item (fairly, oldest waiter first).

        Returns at once when there is room, inside a handler, or when the bus's loop
        is not running (``bus_loop_running=False``); gives up waiting when the
        consumer makes no progress for ``stall_timeout`` seconds. The caller must
        ``put_nowait`` right after, without awaiting in between.
        """
        if not self.is_full() or in_handler() or not bus_loop_running:
            return
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop)
        with self._lock:
            self._waiters.append(waiter)
            if loop not in self._watchdogs:
                self._watchdogs[loop] = self.popped
                loop.call_later(self.stall_timeout, self._watch, loop)
        self._grant()  # a slot freed between is_full() and the append: take it now
        settled = False
        try:
            await waiter.future
            settled = True
        finally:
            with self._lock:
                if waiter.granted:
                    self._granted -= 1  # the slot is ours: the caller adds its item now
                else:
                    self._remove(waiter)
            if waiter.granted and not settled:
                self._grant()  # cancelled with a slot in hand: pass it on

    def _remove(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):  # granted or stalled meanwhile
            self._waiters.remove(waiter)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every ``stall_timeout`` seconds while ``loop`` has waiters: was there progress?

        One timer per loop with waiters, not one per waiter (a thousand timers in the
        loop's heap cost more than the waiting). Without progress for a whole period,
        the oldest waiter adds its item anyway: stalled by its own loop's watchdog, or
        by any loop's when its own loop is not running (a thread blocked elsewhere),
        so that no loop's state can hold everyone behind it.
        """
        with self._lock:
            popped = self._watchdogs.get(loop, -1)
            self._drop_gone()
            if not any(waiter.loop is loop for waiter in self._waiters):
                self._watchdogs.pop(loop, None)
                return
            self._watchdogs[loop] = self.popped
            oldest = self._waiters[0]
            stalled = self.popped == popped and (
                oldest.loop is loop or not oldest.loop.is_running()
            )
            if stalled:
                self._waiters.popleft()
        loop.call_later(self.stall_timeout, self._watch, loop)
        if not stalled:
            return
        self.stalls += 1
        logger.warning(
            "A publisher waited %.1f s for room while the bus made no progress; it adds its "
            "event anyway so nothing deadlocks (a handler may be waiting for it).",
            self.stall_timeout,
        )
        _wake_waiter(oldest)

    def _drop_gone(self) -> None:
        """Forget the oldest waiters that wait no more: cancelled, or their loop closed."""
        waiters = self._waiters
        while waiters and (waiters[0].future.done() or waiters[0].loop.is_closed()):
            waiters.popleft()

    def pop(self) -> T | None:
        """Take the oldest item (``None`` when empty) and hand the freed slot to a waiter."""
        if not self._items:
            return None
        item = self._items.popleft()
        self.popped += 1
        if self._waiters:
            self._grant()
        return item

    def _grant(self) -> None:
        with self._lock:
            while self._waiters and len(self._items) + self._granted < self.maxsize:
                waiter = self._waiters.popleft()
                if waiter.future.done():
                    continue
                waiter.granted = True  # under the lock, as the waiter reads it: before it wakes
                self._granted += 1
                if not _wake_waiter(waiter):  # a waiter whose loop is gone takes no slot
                    waiter.granted = False
                    self._granted -= 1

    async def wait_for_item(self) -> None:
        """Wait (on the consumer's loop) until the queue holds an item."""
        if self._items:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._consumer = (loop, future)
        if self._items:  # added by another thread meanwhile
            self._consumer = None
            return
        try:
            await future
        finally:
            self._consumer = None

    def release_waiters(self) -> None:
        """Let every waiting publisher add its item (the consumer is gone or stopped)."""
        with self._lock:
            waiters = list(self._waiters)
            self._waiters.clear()
            for waiter in waiters:
                if waiter.future.done():
                    continue
                waiter.granted = True
                self._granted += 1
                if not _wake_waiter(waiter):
                    waiter.granted = False
                    self._granted -= 1


def _wake_waiter(waiter: _Waiter) -> bool:
    """Let ``waiter`` go on (from any thread); ``False`` when its loop is closed."""
    loop = waiter.loop
    if loop is running_loop():
        if not waiter.future.done():
            waiter.future.set_result(None)
        return True
    try:
        loop.call_soon_threadsafe(_resolve, waiter.future)
    except RuntimeError:  # the loop was closed: nobody waits there any more
        return False
    return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
