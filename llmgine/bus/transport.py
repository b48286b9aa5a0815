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
from collections.abc import Awaitable, Callable
from typing import Protocol

from llmgine.bus.loops import running_loop
from llmgine.bus.queue import EventQueue, in_handler
from llmgine.messages.events import Event
from llmgine.observability.events import SpanContext

__all__ = ["Deliver", "Item", "LocalTransport", "Transport"]

logger = logging.getLogger(__name__)

Item = tuple[Event, SpanContext | None]
"""An accepted event and the span it was published in."""

Deliver = Callable[[Event, SpanContext | None], Awaitable[None]]
"""The bus's callback that runs an event's handlers; it never raises."""


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

    The consumer runs on the loop that called :meth:`start`, in a fresh context
    where :data:`~llmgine.bus.queue.in_handler` is true. If it ends any way but
    through :meth:`stop`, that is logged and it is started again; events left when
    its loop goes away wait for the next :meth:`start`.

    Args:
        deliver: Runs the handlers of one event.
        on_idle: Called whenever the queue runs empty (the bus flushes its sinks).
        maxsize: Events queued before publishers wait.
    """

    def __init__(self, deliver: Deliver, on_idle: Callable[[], None], maxsize: int) -> None:
        self.queue: EventQueue[Item] = EventQueue(maxsize)
        self.restarts = 0
        """Times the consumer ended unexpectedly and was started again."""
        self._deliver = deliver
        self._on_idle = on_idle
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._busy = False
        self._idle_waiters: list[asyncio.Future[None]] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the consumer runs on, while it runs."""
        return self._loop if self.is_running else None

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The consumer task, while it runs."""
        return self._task if self.is_running else None

    @property
    def is_running(self) -> bool:
        """Whether the consumer is delivering events."""
        task = self._task
        return task is not None and not task.done()

    @property
    def pending(self) -> int:
        """Events queued and not yet delivered."""
        return len(self.queue)

    async def reserve(self) -> None:
        """Wait for room in the queue (see :meth:`EventQueue.reserve`)."""
        if self.queue.is_full() and self.is_running:
            loop = self._loop
            await self.queue.reserve(bus_loop_running=loop is not None and loop.is_running())

    def put(self, item: Item) -> None:
        """Queue an accepted event."""
        self.queue.put_nowait(item)

    def start(self) -> None:
        """Start the consumer on the running loop (a no-op while it runs)."""
        if self.is_running:
            return
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._spawn()

    def _spawn(self) -> None:
        assert self._loop is not None
        # A fresh context: handlers must not inherit the span or session of start()'s caller.
        self._task = self._loop.create_task(
            self._consume(), name="llmgine-bus", context=contextvars.Context()
        )
        self._task.add_done_callback(self._ended)

    async def _consume(self) -> None:
        in_handler.set(True)  # publishers in handlers, and in tasks they start, never wait
        queue = self.queue
        deliver = self._deliver
        while True:
            item = queue.pop()
            if item is None:
                self._busy = False
                self._on_idle()
                self._wake_idle()
                if self._stopping:
                    return
                await queue.wait_for_item()
                continue
            self._busy = True
            await deliver(*item)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task is not self._task:
            return
        self._busy = False
        if self._stopping and not task.cancelled() and task.exception() is None:
            return
        loop = self._loop
        if task.cancelled():
            level = logging.WARNING if self.pending else logging.DEBUG
            logger.log(
                level,
                "The bus's consumer was cancelled (its event loop is closing?); %d queued "
                "events wait for the next bus.start().",
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
        self._task = None
        self.queue.release_waiters()
        self._wake_idle()

    def _wake_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    async def stop(self) -> None:
        """Deliver every queued event, then end the consumer."""
        task = self._task
        if task is not None and not task.done():
            self._stopping = True
            self.queue.wake()
            await asyncio.shield(task)
        self._task = None
        self._loop = None

    async def join(self) -> None:
        """Return once the queue is empty and no handler runs (at once when stopped)."""
        loop = running_loop()
        assert loop is not None
        while self.is_running and (self.queue or self._busy):
            future: asyncio.Future[None] = loop.create_future()
            self._idle_waiters.append(future)
            await future
