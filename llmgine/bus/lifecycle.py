"""A bus's parts and lifecycle: start, stop, wait, flush, sinks, the shared bus.

:class:`BusLifecycle` builds the parts of a :class:`~llmgine.bus.MessageBus` (the
transport, the intake and its sinks, the registry) and runs them; the dispatch
of commands and events is the subclass's, in :mod:`llmgine.bus.bus`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TextIO

from llmgine.bus.handlers import HandlerThreads
from llmgine.bus.intake import Intake
from llmgine.bus.loops import call_on, running_loop
from llmgine.bus.ports import BridgeFactory, BusParts
from llmgine.bus.queue import in_handler
from llmgine.bus.registration import HandlerRegistrations
from llmgine.bus.stats import BusStats
from llmgine.bus.transport import LocalTransport
from llmgine.errors import BusStateError, ConfigurationError
from llmgine.messages.events import Event
from llmgine.observability.console import ConsolePrinter
from llmgine.observability.events import SpanContext
from llmgine.observability.jsonl import JsonlLog
from llmgine.observability.sinks import Sink

__all__ = ["BusLifecycle"]

logger = logging.getLogger(__name__)


def _default_log_filename() -> str:
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    return f"events_{stamp}_{uuid.uuid4().hex[:6]}.jsonl"


def _in_consumer() -> BusStateError | None:
    if in_handler():
        return BusStateError(
            "This was called from an event handler (or a task it started), which would wait "
            "for itself; publish and return instead, and wait from outside the handlers."
        )
    return None


class BusLifecycle(HandlerRegistrations):
    """The parts of a bus and their lifecycle; see :class:`~llmgine.bus.MessageBus`."""

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = "logs",
        log_filename: str | None = None,
        enable_console_metrics: bool = True,
        enable_console_traces: bool = True,
        *,
        console_stream: TextIO | None = None,
        max_queue_size: int = 1_000,
        sinks: Iterable[Sink] = (),
    ) -> None:
        if max_queue_size < 1:
            raise ConfigurationError(f"max_queue_size must be at least 1; got {max_queue_size}.")
        super().__init__()
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self._stats = BusStats()
        self._threads = HandlerThreads()  # no thread until a sync handler needs one
        self._transport = LocalTransport(self._deliver, self._flush_due, max_queue_size)
        self._intake = Intake(self._transport, self._stats)
        self._accept = self._intake.accept  # bound once: it is on every message's path
        self._log: JsonlLog | None = None
        if log_dir is not None:
            self._log = JsonlLog(Path(log_dir) / (log_filename or _default_log_filename()))
            self._intake.sinks.add(self._log)
        self.console = ConsolePrinter(
            console_stream, metrics=enable_console_metrics, traces=enable_console_traces
        )
        if enable_console_metrics or enable_console_traces:
            # Either flag can be switched on later through bus.console.
            self._intake.sinks.add(self.console)
        for sink in sinks:
            self._intake.sinks.add(sink)

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return (
            f"<{type(self).__name__} {state} log={str(self.log_path) if self.log_path else None!r}>"
        )

    def _repr_html_(self) -> str:
        from llmgine._html import table

        stats = self.stats
        rows: list[tuple[str, Any]] = [
            ("state", "running" if self.is_running else "stopped"),
            ("log", str(self.log_path) if self.log_path else "off"),
            ("handlers", len(self.registrations())),
            ("commands executed", stats.commands_executed),
            ("commands failed", stats.commands_failed),
            ("events published", stats.events_published),
            ("handler failures", stats.handler_failures),
            ("sink failures", stats.sink_failures),
            ("events pending", self.pending_events),
        ]
        return table(type(self).__name__, rows)

    async def _deliver(self, event: Event, span: SpanContext | None) -> None:
        """Run the handlers of one event (the transport calls it; see the subclass)."""
        raise NotImplementedError

    async def _emit(self, event: Event) -> None:
        """Publish one of the bus's own events (see the subclass)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- state

    @property
    def stats(self) -> BusStats:
        """Running totals: messages, failures of handlers and sinks, restarts, stalls."""
        stats = self._stats
        stats.sink_failures = self._intake.sinks.failures
        stats.events_handled = self._transport.delivered
        stats.consumer_restarts = self._transport.restarts
        stats.publisher_stalls = self._transport.queue.stalls
        return stats

    @property
    def log_path(self) -> Path | None:
        """Path of the JSONL log, or ``None`` when the bus writes no file."""
        return None if self._log is None else self._log.path

    @property
    def sinks(self) -> tuple[Sink, ...]:
        """The sinks every accepted message goes to, in order."""
        return tuple(self._intake.sinks)

    @property
    def is_running(self) -> bool:
        """Whether the bus is started and handling events."""
        return self._transport.is_running

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the bus runs on while started (in a notebook: the kernel's)."""
        return self._transport.loop

    @property
    def pending_events(self) -> int:
        """Events published but not yet handled."""
        return self._transport.pending

    def add_sink(self, sink: Sink) -> None:
        """Give every message accepted from now on to ``sink`` too (see :class:`Sink`)."""
        self._intake.sinks.add(sink)

    def remove_sink(self, sink: Sink) -> bool:
        """Stop giving messages to ``sink`` (it is not closed); return whether it was there."""
        return self._intake.sinks.remove(sink)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start handling events on the running event loop (a no-op if started).

        Events published before ``start()`` are handled now, in order. A stopped
        bus may be started again, on the same or another event loop.

        Raises:
            OSError: The log file cannot be created or opened (a wrong ``log_dir``);
                write failures later on are reported, not raised.
        """
        if self._log is not None and not self.is_running:
            self._log.open()  # a wrong log_dir fails here, clearly, not on the first flush
        self._intake.disarm()  # a timer left on a closed loop never fires
        self._transport.start()

    async def stop(self) -> None:
        """Handle every queued event, then flush and close the sinks (idempotent).

        Raises:
            BusStateError: Called from a handler, or from another thread while the
                bus's loop is not running.
        """
        if (error := _in_consumer()) is not None:
            raise error
        loop = self._transport.loop
        if loop is not None and loop is not running_loop() and not loop.is_closed():
            await call_on(loop, self.stop(), "bus.stop()")
            return
        if self._intake.link is not None:
            await self.disconnect()
        await self._transport.stop()
        for callback in list(self._on_stop):
            try:
                await callback()
            except Exception:
                logger.exception("a stop callback of the bus failed: %r", callback)
        self._threads.close()
        self._intake.close()

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Await ``callback()`` in every ``stop()``, once the queued events are handled.

        For what lives as long as the bus (an engine's MCP server processes). A
        callback that raises is logged and the others still run. Returns a function
        that removes the callback.
        """
        self._on_stop.append(callback)

        def remove() -> None:
            if callback in self._on_stop:
                self._on_stop.remove(callback)

        return remove

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def flush(self) -> None:
        """Deliver what the sinks buffered (the log's lines) now; failures are reported."""
        self._intake.flush()

    def _flush_due(self) -> None:
        self._intake.flush_due()

    async def wait_for_events(self) -> None:
        """Return once every event published so far has been handled, and flush the sinks.

        Events that handlers publish meanwhile are waited for too. On a bus that is
        not running this returns at once: its events are handled after ``start()``.

        Raises:
            BusStateError: Called from a handler, or from another thread while the
                bus's loop is not running.
        """
        if (error := _in_consumer()) is not None:
            raise error
        loop = self._transport.loop
        if loop is not None and loop is not running_loop():
            await call_on(loop, self.wait_for_events(), "bus.wait_for_events()")
            return
        await self._transport.join()
        self.flush()

    # ----------------------------------------------- several processes (Redis)

    bridge_factory: ClassVar[BridgeFactory | None] = None
    """What :meth:`connect` attaches: ``factory(port, url, namespace, **options)``.

    :mod:`llmgine.bus` sets it to the shared bus on Redis
    (:class:`llmgine.bus.remote.RedisLink`); a subclass may attach another bridge.
    """

    @property
    def remote(self) -> Any:
        """The bridge to the shared bus while connected (see :meth:`connect`), else ``None``.

        With the default bridge, a :class:`llmgine.bus.remote.RedisLink`.
        """
        return self._intake.link

    async def connect(self, url: str, namespace: str = "llmgine", **options: Any) -> None:
        """Join the shared bus on the Redis server at ``url`` (starts this bus if needed).

        Commands with no local handler then run in a connected process that has one;
        events reach every connected process that handles them; local handlers run
        here as before. Needs the ``redis`` extra (``pip install 'llmgine[redis]'``).

        Args:
            url: The Redis URL, e.g. ``redis://127.0.0.1:6379/0``.
            namespace: Buses in one namespace form one shared bus.
            **options: ``heartbeat``, ``claim_after``, ``max_concurrency``, ``max_buffer``,
                ``forget_after``, ``max_deliveries``, ``connect_timeout`` (default 5 s),
                ``stop_timeout`` (default 5 s) (see :class:`llmgine.bus.remote.RedisLink`).

        Raises:
            BusStateError: The bus is connected already.
            SharedBusConnectionError: Redis cannot be reached at ``url``, or does not
                answer within ``connect_timeout`` seconds (also a ``ConnectionError``).
            ConfigurationError: ``url`` is not a Redis URL, Redis refuses its settings
                (a database index it lacks, a wrong password), or an option is out of
                range (also a ``ValueError``).
        """
        if self._intake.link is not None:
            raise BusStateError("This bus is connected already; call bus.disconnect() first.")
        factory = type(self).bridge_factory  # from the class: a plain function, not bound
        if factory is None:
            raise BusStateError(
                f"{type(self).__name__}.bridge_factory is not set: nothing to connect with."
            )
        await self.start()
        port = BusParts(self._registry, self._transport, self._emit, self._threads)
        try:
            link = factory(port, url, namespace, **options)
        except ConfigurationError:
            raise
        except ValueError as exc:  # redis-py's word on a URL it cannot read
            from llmgine._urls import redact_url

            raise ConfigurationError(
                f"Not a Redis URL: {redact_url(url)} ({type(exc).__name__}); expected "
                "redis://[[user]:password@]host[:port][/db], rediss://... or unix://..."
            ) from None
        await link.open()
        self._intake.link = link

    async def disconnect(self) -> None:
        """Leave the shared bus: finish remote commands running here, send buffered events.

        A no-op when not connected; ``stop()`` calls it.
        """
        link = self._intake.link
        if link is None:
            return
        try:
            await link.close()
        finally:
            self._intake.link = None
