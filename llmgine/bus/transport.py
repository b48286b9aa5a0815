"""How published events reach their handlers: the transport behind the bus.

A transport takes accepted events and hands each, in order, to the bus's
``deliver`` callback on the bus's event loop. :class:`LocalTransport` does this in
one process with an :class:`~llmgine.bus.queue.EventQueue` and one consumer task; a
transport across processes implements the same :class:`Transport` protocol.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from llmgine.bus.loops import running_loop
from llmgine.bus.queue import EventQueue, delivering
from llmgine.messages.events import Event
from llmgine.observability.events import SpanContext

__all__ = ["Deliver", "Item", "LocalTransport", "Transport"]

logger = logging.getLogger(__name__)

_SLICE = 0.0002
"""Seconds the consumer may deliver in a row before it lets the loop run other tasks."""

_CLOCK_EVERY = 8
"""Deliveries between two looks at the clock (it is not free on the hot path)."""

Item = tuple[Event, SpanContext | None]
"""An accepted event and the span it was published in."""

Deliver = Callable[[Event, SpanContext | None], Awaitable[None]]
"""The bus's callback that runs an event's handlers; only cancellation escapes it."""


class _Call:
    """A callback queued behind the events accepted so far (see ``call_after_queued``)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn


class Transport(Protocol):
    """What the bus needs of a transport."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop events are delivered on while running."""

    @property
    def is_running(self) -> bool:
        """Whether events are being delivered."""

    @property
    def pending(self) -> int:
        """Events accepted and not yet delivered."""

    async def reserve(self) -> None:
        """Wait until the transport takes one more event (backpressure)."""

    def put(self, item: Item) -> None:
        """Take an accepted event for delivery (after ``reserve``; never waits)."""

    def start(self) -> None:
        """Start delivering on the running loop."""

    async def stop(self) -> None:
        """Deliver everything taken so far, then stop."""

    async def join(self) -> None:
        """Return once everything taken so far is delivered (and what that publishes)."""


class LocalTransport:
    """Delivers events in one process: a bounded queue and one consumer task.

    The consumer runs on the loop that called :meth:`start`, in a fresh context.
    If it fails, it is restarted at once; if it is cancelled by anyone but
    :meth:`stop` (a handler cancelling its own task, a "cancel every task"
    shutdown), that is logged and the next publish or wait on its still-running
    loop starts it again. Events left when its loop goes away wait for the next
    :meth:`start`, on any loop.

    Args:
        deliver: Runs the handlers of one event.
        on_idle: Called whenever the queue runs empty (the bus flushes its sinks).
        maxsize: Events queued before publishers wait.
    """

    def __init__(self, deliver: Deliver, on_idle: Callable[[], None], maxsize: int) -> None:
        self.queue: EventQueue[Item | _Call] = EventQueue(maxsize)
        self.restarts = 0
        """Times the consumer ended unexpectedly and was started again."""
        self.accepted = 0
        self.delivered = 0
        self.from_handlers = 0
        self._deliver = deliver
        self._on_idle = on_idle
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._cancelled = False
        self._busy = False
        self._joins: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the consumer runs on, while it runs."""
        return self._loop if self.is_running else None

    @property
    def is_running(self) -> bool:
        """Whether the consumer is delivering events (or will be, once revived)."""
        task = self._task
        if task is None or task.get_loop().is_closed():
            return False
        return not task.done() or self._cancelled

    @property
    def pending(self) -> int:
        """Events queued and not yet delivered."""
        return len(self.queue)

    async def reserve(self) -> None:
        """Wait for room in the queue (see :meth:`EventQueue.reserve`)."""
        if self.queue.is_full() and self.is_running:
            self.revive()
            loop = self._loop
            await self.queue.reserve(bus_loop_running=loop is not None and loop.is_running())

    def put(self, item: Item) -> None:
        """Queue an accepted event."""
        self.accepted += 1
        if delivering.get()[0]:  # in_handler(), inlined: the hot path
            self.from_handlers += 1
        queue = self.queue  # queue.put_nowait(item), inlined: the hot path
        queue._items.append(item)
        if queue._consumer is not None:
            queue.wake()
        if self._cancelled:
            self.revive()

    def call_after_queued(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the consumer once every event accepted so far is delivered."""
        self.queue.put_nowait(_Call(fn))

    def start(self) -> None:
        """Start the consumer on the running loop (a no-op while it runs)."""
        if self.is_running and not self._cancelled:
            return
        self._stopping = False
        self._cancelled = False
        self._loop = asyncio.get_running_loop()
        self._spawn()

    def revive(self) -> None:
        """Start a consumer that was cancelled again, if this is its loop and it runs."""
        loop = self._loop
        if not self._cancelled or loop is None or loop.is_closed():
            return
        if loop is not running_loop():
            if loop.is_running():
                loop.call_soon_threadsafe(self.revive)
            return
        self._cancelled = False
        self.restarts += 1
        logger.warning("The bus's consumer was cancelled earlier; it is started again.")
        self._spawn()

    def _spawn(self) -> None:
        assert self._loop is not None
        # A fresh context: handlers must not inherit the span or session of start()'s caller.
        self._task = self._loop.create_task(
            self._consume(), name="llmgine-bus", context=contextvars.Context()
        )
        self._task.add_done_callback(self._ended)

    async def _consume(self) -> None:
        queue = self.queue
        items = queue._items
        deliver = self._deliver
        streak = 0
        slice_ends = time.monotonic() + _SLICE
        while True:
            streak += 1
            if streak >= _CLOCK_EVERY:
                streak = 0
                if time.monotonic() >= slice_ends:
                    # Sync handlers never await: without this, a queue that other threads
                    # keep full would starve every other task and callback on the loop.
                    await asyncio.sleep(0)
                    slice_ends = time.monotonic() + _SLICE
            if items:  # queue.pop(), inlined: the hot path of every event
                item = items.popleft()
                queue.popped += 1
                if queue._waiters:
                    queue._grant()
            else:
                self._busy = False
                self._on_idle()
                self._wake_joins()
                if self._stopping:
                    return
                await queue.wait_for_item()
                continue
            if type(item) is _Call:
                item.fn()
                continue
            self._busy = True
            event, span = item  # type: ignore[misc]
            try:
                await deliver(event, span)
            finally:
                self.delivered += 1
            if self._joins:
                self._wake_joins()

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task is not self._task:
            return
        self._busy = False
        if self._stopping and not task.cancelled() and task.exception() is None:
            return
        loop = self._loop
        if task.cancelled():
            self._cancelled = True
            logger.log(
                logging.WARNING if self.pending else logging.INFO,
                "The bus's consumer task was cancelled (not by bus.stop()); %d queued events "
                "wait. The next publish or wait on its loop starts it again, or bus.start().",
                self.pending,
            )
        elif loop is not None and loop.is_running() and not loop.is_closed():
            self.restarts += 1
            logger.error(
                "The bus's consumer failed and was restarted; nothing queued was lost.",
                exc_info=task.exception(),
            )
            self._spawn()
            return
        else:
            self._task = None
        self.queue.release_waiters()
        self._wake_joins(everyone=True)

    def _wake_joins(self, *, everyone: bool = False) -> None:
        idle = not self.queue and not self._busy
        keep = []
        for target, future in self._joins:
            if everyone or idle or self.delivered >= target:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((target, future))
        self._joins = keep

    async def stop(self) -> None:
        """Deliver every queued event, then end the consumer."""
        self.revive()
        task = self._task
        if task is not None and not task.done() and not task.get_loop().is_closed():
            self._stopping = True
            self.queue.wake()
            await asyncio.shield(task)
        self.queue.release_waiters()  # publishers waiting for room add their events for later
        self._task = None
        self._loop = None
        self._cancelled = False

    async def join(self) -> None:
        """Return once the events accepted so far, and those their handlers publish, are delivered.

        Events other publishers add meanwhile are not waited for, so this ends
        even while others keep publishing.
        """
        loop = running_loop()
        assert loop is not None
        while True:
            self.revive()
            if not (self.is_running and (self.queue or self._busy)):
                return
            target, from_handlers = self.accepted, self.from_handlers
            future: asyncio.Future[None] = loop.create_future()
            self._joins.append((target, future))
            await future
            if self.from_handlers == from_handlers:
                return  # no handler published meanwhile: nothing more to wait for
