"""The small value the parts of the shared bus share: a Redis client, the keys, who we are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmgine.bus.remote.keys import Keys

__all__ = ["Connection"]


@dataclass(frozen=True, slots=True)
class Connection:
    """This process's connection to the shared bus, as its parts need it.

    Made by :class:`~llmgine.bus.remote.RedisLink`; a part given one needs nothing
    else of the link.
    """

    redis: Any
    """The client for calls (a bounded pool); ``Any`` as redis-py's replies are unions."""
    keys: Keys
    """The namespace's key names."""
    process_id: str
    """This process's id on the shared bus."""
    heartbeat: float
    """Seconds between heartbeats."""
