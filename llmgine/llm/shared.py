"""Where the engine's features keep what processes share: the connected bus's Redis.

The call cache (``cache="redis"``), budgets and conversations (``conversations="redis"``)
each keep their data under the bus's namespace, so every worker of that namespace
shares them. They ask for the store on each use: a bus may connect after the engine
is made, and reconnect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmgine.bus.shared_store import SharedStore, connected_store
from llmgine.errors import ConfigurationError

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus

__all__ = ["SharedStore", "connected_store", "shared_store"]


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
