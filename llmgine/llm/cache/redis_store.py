"""Cached answers in the shared bus's Redis (``cache="redis"``): hits shared by every worker.

The answers are one Redis hash, ``{namespace}:cache:calls`` (field: the request's key,
value: the answer's JSON), so every process connected to the namespace reads what any of
them stored. The bus's Redis client is looked up at each call: the bus may connect after
the engine is made, and reconnect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from llmgine.llm.cache.store import StoreSize
from llmgine.llm.shared import SharedStore, shared_store

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus

__all__ = ["SETTING", "RedisStore"]

SETTING = 'cache="redis"'
"""How the user asks for this store, for the error when the bus is not connected."""


class RedisStore:
    """Answers in the connected bus's Redis, under its namespace.

    Args:
        bus: The engine's bus; it must be connected (``await bus.connect(...)``) by the
            first call, else the call fails with a ``ConfigurationError`` saying so.
    """

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus

    def __repr__(self) -> str:
        return f"RedisStore({self.location!r})"

    def _shared(self) -> SharedStore:
        return shared_store(self.bus, "cache", SETTING)

    @property
    def location(self) -> str:
        """``redis <namespace>:cache``, or a note that the bus is not connected yet."""
        remote = self.bus.remote
        if remote is None:
            return "redis (the bus is not connected)"
        return f"redis {remote.connection.keys.namespace}:cache"

    async def get(self, key: str) -> str | None:
        """The answer kept under ``key``, or ``None``."""
        shared = self._shared()
        value = await shared.redis.hget(shared.key("calls"), key)
        return None if value is None else bytes(value).decode("utf-8")

    async def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The answers kept under any of ``keys``, by key: one ``HMGET``."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        shared = self._shared()
        values = await shared.redis.hmget(shared.key("calls"), wanted)
        return {
            key: bytes(value).decode("utf-8")
            for key, value in zip(wanted, values, strict=True)
            if value is not None
        }

    async def put(self, key: str, answer: str, *, provider: str, model: str) -> None:
        """Keep ``answer`` under ``key`` for every process of the namespace."""
        shared = self._shared()
        await shared.redis.hset(shared.key("calls"), key, answer.encode("utf-8"))

    async def size(self) -> StoreSize:
        """How many answers the namespace keeps, and Redis's count of their bytes."""
        shared = self._shared()
        calls = shared.key("calls")
        entries = int(await shared.redis.hlen(calls))
        used = await shared.redis.memory_usage(calls) if entries else 0
        return StoreSize(entries=entries, size_bytes=int(used or 0))

    async def clear(self) -> int:
        """Remove every answer of the namespace; return how many there were."""
        shared = self._shared()
        calls = shared.key("calls")
        async with shared.redis.pipeline(transaction=True) as pipe:
            pipe.hlen(calls)
            pipe.delete(calls)
            entries, _ = await pipe.execute()
        return int(entries)

    async def aclose(self) -> None:
        """Nothing to release: the connection is the bus's."""
        return None
