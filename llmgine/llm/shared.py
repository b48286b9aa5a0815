"""Where the engine's features keep what processes share: the connected bus's Redis.

The call cache (``cache="redis"``), budgets and conversations (``conversations="redis"``)
each keep their data under the bus's namespace, so every worker of that namespace
shares them. They ask for the store on each use: a bus may connect after the engine
is made, and reconnect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmgine.errors import ConfigurationError

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus

__all__ = ["SharedStore", "connected_store", "shared_store"]


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


def shared_store(bus: MessageBus, feature: str, setting: str) -> SharedStore:
    """The Redis place of ``feature`` on ``bus``'s shared bus.

    Args:
        bus: The engine's bus.
        feature: A short name (``"cache"``, ``"spend"``, ``"conversations"``).
        setting: How the user asked for it, for the error (``'cache="redis"'``).

    Raises:
        ConfigurationError: The bus is not connected to Redis.
    """
    store = connected_store(bus, feature)
    if store is None:
        raise ConfigurationError(
            f"{setting} keeps its data in the shared bus's Redis, and this bus is not "
            "connected: run `await bus.connect('redis://...')` before the first prompt, "
            "or choose a local setting."
        )
    return store


def connected_store(bus: MessageBus, feature: str) -> SharedStore | None:
    """The Redis place of ``feature`` while ``bus`` is connected to the shared bus, else ``None``.

    For features that are local until the bus connects (rate limits), then shared.
    """
    remote = bus.remote
    if remote is None:
        return None
    connection = remote.connection
    return SharedStore(connection.redis, f"{connection.keys.namespace}:{feature}")
