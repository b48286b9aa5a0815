"""Where a bus's accepted messages go: the sinks, the transport, the bridge.

Accepting is the one point of order: a message accepted here is given, under one
lock (publishers may be on other threads), to every sink, then (an event) to the
transport that delivers it to the handlers, then (when connected) to the bridge that
forwards it to the other processes. Sinks buffer; the intake makes sure they flush
within :data:`FLUSH_INTERVAL` however busy the bus, and turns a sink's failure or
recovery into an event of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from llmgine.bus.loops import running_loop
from llmgine.bus.stats import BusStats
from llmgine.bus.transport import LocalTransport
from llmgine.observability.sinks import Record, Sink, SinkFailure, SinkSet

if TYPE_CHECKING:
    from llmgine.bus.ports import Bridge

__all__ = ["FLUSH_INTERVAL", "Intake"]

FLUSH_INTERVAL = 0.1
"""Seconds an accepted line may wait in a sink's buffer while the bus is busy."""


class Intake:
    """Takes each accepted message once, in order, to the sinks, the transport and the bridge.

    Args:
        transport: Delivers accepted events to the handlers.
        stats: The bus's totals; ``events_published`` is counted here.
        sinks: The sinks to start with (``None`` among them is left out).
    """

    def __init__(
        self, transport: LocalTransport, stats: BusStats, sinks: Iterable[Sink | None] = ()
    ) -> None:
        self.sinks = SinkSet(self._sink_changed)
        for sink in sinks:
            if sink is not None:
                self.sinks.add(sink)
        self.transport = transport
        self.link: Bridge | None = None
        """The bridge to other processes while connected: accepted events are forwarded to it."""
        self._stats = stats
        self._lock = threading.Lock()  # one order for the sinks and the queue, across threads
        self._notices: list[SinkFailure] = []
        self._flush_armed = False
        self._write = self.sinks.write  # bound once: every message takes this path
        self._put = transport.put

    def accept(self, record: Record, *, queue: bool = True) -> None:
        """Give ``record`` to the sinks; queue an event for its handlers unless ``queue=False``.

        Never waits: a publisher reserves room in the transport before it calls this.
        """
        with self._lock:
            try:
                self._write(record)
            finally:  # even an interrupt in a sink leaves the event counted and queued
                if record.kind == "event":
                    self._stats.events_published += 1
                    if queue:
                        self._put((record.message, record.span))  # type: ignore[arg-type]
                    if self.link is not None:
                        self.link.forward(record)  # buffered: it never waits on the network
        if self._notices:
            self.report()
        if not self._flush_armed:
            self._arm_flush()

    def totals(self) -> BusStats:
        """The bus's totals, with those the sinks and the transport keep read now."""
        stats, transport = self._stats, self.transport
        stats.sink_failures = self.sinks.failures
        stats.events_handled = transport.delivered
        stats.consumer_restarts = transport.restarts
        stats.publisher_stalls = transport.queue.stalls
        return stats

    def flush(self) -> None:
        """Deliver what the sinks buffered now; failures are reported."""
        self.sinks.flush()
        self.report()

    def flush_due(self) -> None:
        """The routine flush (idle, timer): a failing sink is retried after a pause, not now."""
        self.sinks.flush(due=True)
        self.report()

    def close(self) -> None:
        """Flush and close every sink; from now on each accepted line is written at once."""
        self._flush_armed = False
        self.sinks.close()
        self.report()

    def disarm(self) -> None:
        """Forget a flush timer left on a loop that may be gone (the bus starts again)."""
        self._flush_armed = False

    def report(self) -> None:
        """Publish the sink failures and recoveries noticed so far (never waits)."""
        notices, self._notices = self._notices, []
        for notice in notices:
            self.accept(Record("event", notice.event(), None))

    def _sink_changed(self, failure: SinkFailure) -> None:
        self._notices.append(failure)

    def _arm_flush(self) -> None:
        """Flush the sinks within ~100 ms, however long the handlers keep the bus busy."""
        loop = self.transport.loop
        if loop is None or not loop.is_running():
            self.flush()  # nobody will flush on idle or on a timer: write it now
        elif loop is running_loop():
            self._flush_armed = True
            loop.call_later(FLUSH_INTERVAL, self._timed_flush)

    def _timed_flush(self) -> None:
        self._flush_armed = False
        self.flush_due()
