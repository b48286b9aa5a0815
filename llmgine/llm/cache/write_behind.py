"""Answers a batch keeps without waiting for the file: its rows go on meanwhile.

A prompt alone waits until its answer is in the cache file. ``map``'s own row tasks run
inside :meth:`WritesBehind.around` and are :meth:`adopted <WritesBehind.adopt>`: there
a row's answer is queued for the file and the row goes on, while the store's thread
writes it together with the answers that arrive within
:data:`~llmgine.llm.cache.sqlite_store.WRITE_BEHIND_SECONDS`, in one transaction. At
most ``limit`` answers wait for the file at once (a row that would add one more waits
for the oldest), and ``map`` waits (:meth:`WritesBehind.wait`) for every write before it
returns, so every row it reports is in the file.

Why: each write is a hand-over between the event loop and the store's thread, and on a
busy loop the hand-overs, not SQLite, are what a row's write costs. One transaction for
several rows spares most of them. What it trades: a process killed outright (SIGKILL)
may lose up to ``limit`` answers not yet written besides the rows in flight, and a
re-run asks for those rows again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["WritesBehind", "writes_behind"]

_current: ContextVar[WritesBehind | None] = ContextVar("llmgine_cache_writes_behind", default=None)


class WritesBehind:
    """The cache writes the rows of one batch started and did not wait for.

    Args:
        limit: Answers that may wait for the file at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._pending: set[asyncio.Future[None]] = set()
        self._tasks: set[asyncio.Future[Any]] = set()

    @property
    def pending(self) -> int:
        """Writes not yet in the file (nor failed)."""
        return len(self._pending)

    @contextmanager
    def around(self) -> Iterator[None]:
        """Tasks started in the block and then :meth:`adopt`-ed write behind here."""
        token = _current.set(self)
        try:
            yield
        finally:
            _current.reset(token)

    def adopt(self, tasks: Iterable[asyncio.Future[Any]]) -> None:
        """Only these tasks write behind: not threads or tasks they start, nor other loops."""
        self._tasks.update(tasks)

    async def add(self, written: asyncio.Future[None]) -> None:
        """Count ``written`` (settled once its answer is in the file) until it settles.

        Returns at once, unless :attr:`limit` answers already wait: then once fewer do.
        """
        self._pending.add(written)
        written.add_done_callback(self._pending.discard)
        while len(self._pending) > self.limit:
            await asyncio.wait(tuple(self._pending), return_when=asyncio.FIRST_COMPLETED)

    async def wait(self, timeout: float | None = None) -> int:
        """Wait until every write added so far is in the file or failed (the cache logs it).

        Returns:
            How many were still on their way after ``timeout`` seconds (0: none).
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._pending:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            await asyncio.wait(tuple(self._pending), timeout=left)
        return len(self._pending)


def writes_behind() -> WritesBehind | None:
    """The batch whose writes the running task keeps behind, if it is one of its rows."""
    behind = _current.get()
    if behind is None:
        return None
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop here (a thread the context was copied to)
        return None
    return behind if task in behind._tasks else None
