"""One call per request at a time in this process: identical requests wait for the first."""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["SingleFlight", "Turn"]


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

    def turn(self, key: str) -> Turn:
        """Hold ``key``'s turn for an ``async with`` block; it yields whether it had to wait."""
        return Turn(self, key)


class Turn:
    """One ``async with flights.turn(key) as waited:`` block.

    A class rather than an ``asynccontextmanager``: it runs for every call that misses
    the cache.
    """

    __slots__ = ("_done", "_flights", "_key")

    def __init__(self, flights: SingleFlight, key: str) -> None:
        self._flights = flights
        self._key = key
        self._done: asyncio.Event | None = None

    async def __aenter__(self) -> bool:
        flights, key = self._flights, self._key
        waited = False
        while (holder := flights._holders.get(key)) is not None:
            waited = True
            flights.waiting += 1
            try:
                await holder.wait()
            finally:
                flights.waiting -= 1
        self._done = flights._holders[key] = asyncio.Event()
        return waited

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        del self._flights._holders[self._key]
        if self._done is not None:
            self._done.set()
