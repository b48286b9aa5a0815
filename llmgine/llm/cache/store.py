"""What a place that keeps cached answers does (a SQLite file, the shared bus's Redis)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["CacheStats", "CacheStore", "StoreSize"]


@dataclass(frozen=True, slots=True)
class StoreSize:
    """How much a store holds."""

    entries: int
    """Answers kept."""
    size_bytes: int
    """Space they take (the file and its write-ahead log; Redis's own count for Redis)."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What a call cache did in this process, and what it holds.

    ``hits`` and ``misses`` count this process's lookups through this ``LLMCache``;
    ``entries`` and ``size_bytes`` are the whole store's, whoever wrote it.
    """

    hits: int
    """Calls answered from the cache (no request sent)."""
    misses: int
    """Calls that asked the model (and kept its answer when it completed)."""
    entries: int
    """Answers kept in the store."""
    size_bytes: int
    """Space the store takes."""
    path: Path | None
    """The SQLite file; ``None`` for the shared bus's Redis."""
    location: str
    """Where the answers are, for people: the file's path or ``redis <namespace>:cache``."""

    @property
    def hit_rate(self) -> float:
        """Hits over lookups (0.0 before the first)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class CacheStore(Protocol):
    """Keeps answers by key; every method is a coroutine that never blocks the event loop.

    Answers are stored as the JSON text of a :class:`~llmgine.llm.types.Completion`.
    """

    @property
    def location(self) -> str:
        """Where the answers are, for people and error messages."""
        ...

    async def get(self, key: str) -> str | None:
        """The answer kept under ``key``, or ``None``."""
        ...

    async def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The answers kept under any of ``keys``, by key (a key with none is left out).

        One round trip for them all where the store can (a batch's rows).
        """
        ...

    async def put(self, key: str, answer: str, *, provider: str, model: str) -> None:
        """Keep ``answer`` under ``key`` (the latest write wins)."""
        ...

    async def size(self) -> StoreSize:
        """How much the store holds."""
        ...

    async def clear(self) -> int:
        """Remove every answer; return how many there were."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds open; it opens again when used."""
        ...
