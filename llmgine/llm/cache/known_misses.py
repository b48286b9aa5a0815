"""Keys a batch read of the store just found missing: their next lookup skips the store.

A ``map`` reads the cache for many rows at once before it sends them; a row found
missing is then sent, and its call's own lookup would read the store again only to find
nothing. Each key found missing is remembered for a while and spares one lookup; a key
kept meanwhile (in this process) is forgotten at once. What another process keeps
meanwhile is not seen: that call is made again, as it would be had both started at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

__all__ = ["KnownMisses"]


class KnownMisses:
    """Up to ``size`` keys found missing, each good for one lookup within ``ttl`` seconds.

    Args:
        size: How many keys to remember at most (the oldest go first).
        ttl: Seconds a key found missing is trusted; later its lookup reads the store.
        clock: Where the time comes from (seconds, never going back).
    """

    def __init__(
        self,
        size: int = 100_000,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self.ttl = ttl
        self._clock = clock
        self._found: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._found)

    def add(self, keys: Iterable[str]) -> None:
        """Remember ``keys`` as found missing now."""
        now = self._clock()
        found = self._found
        for key in keys:
            found[key] = now
            found.move_to_end(key)
        while len(found) > self.size:
            found.popitem(last=False)

    def take(self, key: str) -> bool:
        """Whether ``key`` was found missing lately; it is forgotten either way."""
        when = self._found.pop(key, None)
        return when is not None and self._clock() - when <= self.ttl

    def discard(self, key: str) -> None:
        """Forget ``key`` (it was just kept)."""
        self._found.pop(key, None)

    def clear(self) -> None:
        """Forget every key."""
        self._found.clear()
