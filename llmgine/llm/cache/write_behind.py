"""Answers a batch keeps without waiting for the file: its rows go on meanwhile.

A prompt alone waits until its answer is in the cache file. ``map`` runs its rows
inside :meth:`WritesBehind.around`: there a row's answer is queued for the file and
the row finishes at once, while the store's thread writes it together with the answers
that arrive within :data:`~llmgine.llm.cache.sqlite_store.WRITE_BEHIND_SECONDS`, in one
transaction. ``map`` then waits (:meth:`WritesBehind.wait`) for every write before it
returns, so every row it reports is in the file.

Why: each write is a hand-over between the event loop and the store's thread, and on a
busy loop the hand-overs, not SQLite, are what a row's write costs. One transaction for
several rows spares most of them. What it trades: a process killed (SIGKILL) may lose
the answers of the last few milliseconds besides those in flight, and a re-run asks for
those rows again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["WritesBehind", "writes_behind"]

_current: ContextVar[WritesBehind | None] = ContextVar("llmgine_cache_writes_behind", default=None)


class WritesBehind:
    """The cache writes the rows of one batch started and did not wait for."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Future[None]] = set()

    @property
    def pending(self) -> int:
        """Writes not yet in the file (nor failed)."""
        return len(self._pending)

    @contextmanager
    def around(self) -> Iterator[None]:
        """Within the block, and in the tasks started in it, the cache writes behind here."""
        token = _current.set(self)
        try:
            yield
        finally:
            _current.reset(token)

    def add(self, written: asyncio.Future[None]) -> None:
        """Count ``written`` (settled once its answer is in the file) until it settles."""
        self._pending.add(written)
        written.add_done_callback(self._pending.discard)

    async def wait(self) -> None:
        """Return once every write added so far is in the file or failed (the cache logs it)."""
        while self._pending:
            await asyncio.wait(tuple(self._pending))


def writes_behind() -> WritesBehind | None:
    """The batch whose writes the running task keeps behind, if any."""
    return _current.get()
