"""Running totals of what went through a bus."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BusStats"]


@dataclass
class BusStats:
    """Running totals of what went through a bus (``bus.stats``).

    Read ``bus.stats`` again for fresh figures: the counts kept by the bus's parts
    (events handled, sink failures, restarts, stalls) are copied in on each read.
    """

    commands_executed: int = 0
    commands_failed: int = 0
    events_published: int = 0
    events_handled: int = 0
    """Events whose handlers have all run (an event counts once they return)."""
    handler_failures: int = 0
    """Event handlers that raised (any exception, ``CancelledError`` included)."""
    sink_failures: int = 0
    """Failed calls of a sink (a log write on a full disk, ...), repeats included."""
    consumer_restarts: int = 0
    """Times the event consumer ended unexpectedly and was started again."""
    publisher_stalls: int = 0
    """Publishers that stopped waiting for room because the bus made no progress."""

    def rows(
        self, state: str, log: Path | None, handlers: int, pending: int
    ) -> list[tuple[str, Any]]:
        """The rows of a bus's HTML table: its state, log, handlers and these totals."""
        return [
            ("state", state),
            ("log", str(log) if log else "off"),
            ("handlers", handlers),
            ("commands executed", self.commands_executed),
            ("commands failed", self.commands_failed),
            ("events published", self.events_published),
            ("handler failures", self.handler_failures),
            ("sink failures", self.sink_failures),
            ("events pending", pending),
        ]
