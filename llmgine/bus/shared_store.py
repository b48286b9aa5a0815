"""A feature's place in the shared bus's Redis, while the bus is connected.

The bus's own features (dead letters) and the engine's (the cache, budgets,
conversations, rate limits) keep their data under the bus's namespace. They ask for
the place on each use: a bus may connect late, and reconnect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmgine.bus.surface import BusSurface

__all__ = ["SharedStore", "connected_store"]


@dataclass(frozen=True, slots=True)
class SharedStore:
    """One feature's place in the shared bus's Redis."""

    redis: Any
    """The connected bus's client (replies are bytes); ``Any`` as redis-py's types are unions."""
    prefix: str
    """``{namespace}:{feature}``: the start of every key the feature writes."""

    def key(self, *parts: str) -> str:
        """``prefix:part:part...``."""
        return ":".join((self.prefix, *parts))


def connected_store(bus: BusSurface, feature: str) -> SharedStore | None:
    """The Redis place of ``feature`` while ``bus`` is connected to the shared bus, else ``None``.

    For features that are local until the bus connects (rate limits), then shared.
    """
    remote = bus.remote
    if remote is None:
        return None
    connection = remote.connection
    return SharedStore(connection.redis, f"{connection.keys.namespace}:{feature}")
