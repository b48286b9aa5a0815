"""What the shared-bus tests share: a quiet bus, a handler that counts what it hears, and a
look at which worker took a command."""

from __future__ import annotations

import asyncio
from typing import Any

from llmgine.bus import MessageBus
from llmgine.bus.remote.keys import WORKERS, type_key
from llmgine.messages import Command


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


async def taken_by(client: Any, caller: MessageBus, kind: type[Command]) -> str:
    """The consumer (a worker) that took a command of ``kind``: pending in its group.

    Polls Redis's own state (another process's), bounded at 60 s.
    """
    assert caller.remote is not None
    stream = caller.remote.keys.command(type_key(kind))
    for _ in range(1200):
        pending = await client.xpending_range(stream, WORKERS, min="-", max="+", count=1)
        if pending:
            return str(pending[0]["consumer"].decode())
        await asyncio.sleep(0.05)
    raise AssertionError("no worker took the command")
