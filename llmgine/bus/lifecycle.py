"""A bus's lifecycle: start, stop, wait, flush, and the bridge to other processes.

:class:`Lifecycle` runs the parts a :class:`~llmgine.bus.MessageBus` is made of (the
transport, the intake and its sinks, the handler threads), attaches a bridge through
the bus's port (:mod:`llmgine.bus.ports`; it names no bridge itself) and tells the
bus's features (:class:`Feature`: the scheduler) when it connects, leaves, stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from llmgine.bus.handlers import HandlerThreads
from llmgine.bus.intake import Intake
from llmgine.bus.loops import call_on, running_loop
from llmgine.bus.ports import BridgeFactory, BusPort
from llmgine.bus.queue import in_handler
from llmgine.bus.transport import LocalTransport
from llmgine.errors import BusStateError
from llmgine.observability.jsonl import JsonlLog

__all__ = ["Feature", "Lifecycle", "jsonl_log"]

logger = logging.getLogger(__name__)


def jsonl_log(log_dir: str | os.PathLike[str] | None, filename: str | None) -> JsonlLog | None:
    """The bus's JSONL log in ``log_dir`` (``None``: none); no name means a timestamped one."""
    if log_dir is None:
        return None
    if filename is None:
        stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
        filename = f"events_{stamp}_{uuid.uuid4().hex[:6]}.jsonl"
    return JsonlLog(Path(log_dir) / filename)


FIRST_CALLBACKS_TIMEOUT = 30.0
"""Seconds ``stop()`` gives the callbacks that run before it stops anything."""


async def _run_all(callbacks: list[Callable[[], Awaitable[None]]]) -> None:
    """Await each stop callback in turn; one that raises is logged, the others still run.

    A ``CancelledError`` of a callback's own is logged like any failure; only the
    cancellation of the stop itself (its caller's) propagates.
    """
    for callback in list(callbacks):
        try:
            await callback()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            logger.exception("a stop callback of the bus was cancelled: %r", callback)
        except Exception:
            logger.exception("a stop callback of the bus failed: %r", callback)


def _in_consumer() -> BusStateError | None:
    if in_handler():
        return BusStateError(
            "This was called from an event handler (or a task it started), which would wait "
            "for itself; publish and return instead, and wait from outside the handlers."
        )
    return None


class Feature(Protocol):
    """A feature of the bus that follows its lifecycle (the scheduler)."""

    def connected(self) -> None:
        """The bus has joined the shared bus."""
        ...

    async def disconnected(self) -> None:
        """The bus is leaving the shared bus (its bridge is still open)."""
        ...

    async def stop(self) -> None:
        """The bus is stopping (called on its loop, or while it is not running)."""
        ...


class Lifecycle:
    """Starts, stops, waits for and flushes a bus's parts; connects its bridge.

    Args:
        transport: Delivers the bus's events to its handlers.
        intake: Takes every accepted message to the sinks, the transport, the bridge.
        threads: The threads of the bus's sync handlers.
        log: The JSONL log, if the bus writes one.
        port: What an attached bridge is given.
        features: Told when the bus connects, leaves the shared bus and stops.
    """

    def __init__(
        self,
        transport: LocalTransport,
        intake: Intake,
        threads: HandlerThreads,
        log: JsonlLog | None,
        port: BusPort,
        features: tuple[Feature, ...] = (),
    ) -> None:
        self.transport = transport
        self.intake = intake
        self.threads = threads
        self.log = log
        self.port = port
        self.features = features
        self.on_stop: list[Callable[[], Awaitable[None]]] = []
        self.on_stopping: list[Callable[[], Awaitable[None]]] = []
        self._first_phase: asyncio.Future[None] | None = None
        self._closing: asyncio.Future[None] | None = None
        """Set while a stop's first callbacks run: another stop waits for it to be done."""

    def add_on_stop(
        self, callback: Callable[[], Awaitable[None]], *, first: bool = False
    ) -> Callable[[], None]:
        """Run ``callback`` in every ``stop()`` (before anything stops if ``first``).

        Returns what removes it.
        """
        callbacks = self.on_stopping if first else self.on_stop
        callbacks.append(callback)

        def remove() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return remove

    async def start(self) -> None:
        """Start handling events on the running loop (see ``MessageBus.start``)."""
        if self.log is not None and not self.transport.is_running:
            self.log.open()  # a wrong log_dir fails here, clearly, not on the first flush
        self.intake.disarm()  # a timer left on a closed loop never fires
        self.transport.start()

    async def stop(self) -> None:
        """Stop the features, handle the queued events, run the stop callbacks, close.

        The features stop only when called on the bus's loop or while it is not running
        (see ``MessageBus.stop``).
        """
        if (error := _in_consumer()) is not None:
            raise error  # before anything stops: a handler's stop() changes nothing
        loop = self.transport.loop
        if loop is None or loop is running_loop():
            for feature in self.features:
                await feature.stop()
        await self._stop()

    async def _stop(self) -> None:
        if (error := _in_consumer()) is not None:
            raise error
        loop = self.transport.loop
        if loop is not None and loop is not running_loop() and not loop.is_closed():
            await call_on(loop, self._stop(), "bus.stop()")
            return
        # A stop made while another one's first callbacks run (two at once) waits for
        # them: it must not leave the shared bus while what they publish goes out.
        other = self._first_phase
        if other is not None and not other.done() and other.get_loop() is running_loop():
            await asyncio.shield(other)
        phase = asyncio.get_running_loop().create_future()
        self._first_phase = phase
        try:
            # Still delivering and connected: work in flight ends, and what it publishes
            # reaches the handlers and the other processes (within FIRST_CALLBACKS_TIMEOUT).
            async with asyncio.timeout(FIRST_CALLBACKS_TIMEOUT):
                await _run_all(self.on_stopping)
        except TimeoutError:
            logger.warning(
                "The bus's first stop callbacks took more than %g s; it stops without them.",
                FIRST_CALLBACKS_TIMEOUT,
            )
        finally:  # whatever a callback raised, the bus leaves the shared bus and stops
            if not phase.done():
                phase.set_result(None)
            if self.intake.link is not None:
                await self._close_bridge()
            await self.transport.stop()
            await _run_all(self.on_stop)
            self.threads.close()
            self.intake.close()

    async def wait_for_events(self) -> None:
        """Wait for every published event, then flush (see ``MessageBus.wait_for_events``)."""
        if (error := _in_consumer()) is not None:
            raise error
        loop = self.transport.loop
        if loop is not None and loop is not running_loop():
            await call_on(loop, self.wait_for_events(), "bus.wait_for_events()")
            return
        await self.transport.join()
        self.intake.flush()

    async def connect(
        self, factory: BridgeFactory | None, url: str, namespace: str, **options: Any
    ) -> None:
        """Attach the bridge ``factory`` makes (see ``MessageBus.connect``)."""
        if self.intake.link is not None:
            raise BusStateError("This bus is connected already; call bus.disconnect() first.")
        if factory is None:
            raise BusStateError("The bus has no bridge_factory: nothing to connect with.")
        await self.start()
        link = factory(self.port, url, namespace, **options)
        await link.open()
        self.intake.link = link
        for feature in self.features:
            feature.connected()

    async def disconnect(self) -> None:
        """Tell the features, close the bridge if one is attached (``MessageBus.disconnect``)."""
        for feature in self.features:
            await feature.disconnected()
        await self._close_bridge()

    async def _close_bridge(self) -> None:
        link = self.intake.link
        if link is None:
            return
        closing = self._closing
        if closing is not None and not closing.done() and closing.get_loop() is running_loop():
            await asyncio.shield(closing)  # a stop or disconnect at once: the link closes once
            return
        self._closing = closing = asyncio.get_running_loop().create_future()
        try:
            await link.close()
        finally:
            self.intake.link = None
            closing.set_result(None)
