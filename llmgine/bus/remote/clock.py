"""The Redis server's clock, as this process estimates it: deadlines and adverts use it.

Every process reads deadlines (``execute(timeout=)``) and adverts' expiries on the
server's clock, so a process whose own clock is off is neither late nor early.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["ServerClock"]


class ServerClock:
    """How far the Redis server's clock is from this process's, and the time on it now."""

    __slots__ = ("_offset_ms", "_redis")

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._offset_ms = 0.0

    async def sync(self) -> None:
        """Measure the offset now (one round trip)."""
        before = time.time()
        now = await self._redis.time()
        self.set_offset(now, before, time.time())

    def set_offset(self, now: Any, before: float, after: float) -> None:
        """Take ``TIME``'s reply ``now``, asked at ``before`` and answered at ``after``."""
        seconds, micros = now
        self._offset_ms = seconds * 1000 + micros / 1000 - (before + after) * 500

    def now_ms(self) -> int:
        """The Redis server's clock now, in ms."""
        return int(time.time() * 1000 + self._offset_ms)
