"""The small value the parts of the shared bus share: the Redis clients, the keys, who we are."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmgine.bus.remote.keys import Keys

__all__ = ["Connection"]


@dataclass(frozen=True, slots=True)
class Connection:
    """This process's connection to the shared bus, as its parts need it.

    Made by :class:`~llmgine.bus.remote.RedisLink`; each part it composes is given
    this, and the few other parts or callables it uses, never the link itself.
    """

    redis: Any
    """The client for calls (a bounded pool); ``Any`` as redis-py's replies are unions."""
    keys: Keys
    """The namespace's key names."""
    process_id: str
    """This process's id on the shared bus."""
    heartbeat: float
    """Seconds between heartbeats."""
    blocking: Any = field(repr=False)
    """The client for blocking reads (connections of their own: cancelling one at close
    never leaves a half-read reply on a connection the senders use)."""
    where: str
    """The Redis URL with its secrets hidden: what messages and logs name."""
