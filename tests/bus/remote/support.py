"""What the shared-bus tests share: a quiet bus, and a handler that counts what it hears."""

from __future__ import annotations

import asyncio
from typing import Any

from llmgine.bus import MessageBus


def quiet_bus() -> MessageBus:
    """A bus with no log file and no console lines."""
    return MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)


class Collector:
    """An event handler keeping each event's ``n``; ``done`` is set at ``expected`` events."""

    def __init__(self, expected: int) -> None:
        self.seen: list[int] = []
        self.expected = expected
        self.done = asyncio.Event()

    def __call__(self, event: Any) -> None:
        self.seen.append(event.n)
        if len(self.seen) >= self.expected:
            self.done.set()
