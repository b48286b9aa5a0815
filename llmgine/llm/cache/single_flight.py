"""One call per request at a time in this process: identical requests wait for the first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["SingleFlight"]


class SingleFlight:
    """Turns per key: one holder at a time, the others wait for it to finish.

    A cache asks for the key's turn before calling the model, so ten identical
    concurrent requests make one call: the first holds the turn, the nine others wait,
    then find its answer in the cache. When the first call fails (or is cancelled or
    times out), nothing was stored: the next waiter takes the turn and calls the model
    itself, and so on, so a failure is never handed to a request that did not make it.
    """

    def __init__(self) -> None:
        self._holders: dict[str, asyncio.Event] = {}
        self.waiting = 0
        """Requests waiting now for another's turn to end."""

    def __len__(self) -> int:
        """Keys whose turn is held now."""
        return len(self._holders)

    @asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[bool]:
        """Hold ``key``'s turn for the block; yields whether it had to wait for another."""
        waited = False
        while (holder := self._holders.get(key)) is not None:
            waited = True
            self.waiting += 1
            try:
                await holder.wait()
            finally:
                self.waiting -= 1
        done = asyncio.Event()
        self._holders[key] = done
        try:
            yield waited
        finally:
            del self._holders[key]
            done.set()
