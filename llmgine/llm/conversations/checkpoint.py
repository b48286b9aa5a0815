"""WAL checkpoints of a conversation store, in a thread of their own instead of in a turn.

SQLite's default (``wal_autocheckpoint=1000``) runs a checkpoint inside the ``COMMIT``
that takes the write-ahead log past 1,000 pages: every ~250th turn copies the log into
the database and waits for two ``fsync`` calls, milliseconds to tens of milliseconds
that the prompt of that turn waits for. :class:`SQLiteConversationStore` turns that
off on its connections and asks a :class:`Checkpointer` instead, every
:data:`CHECKPOINT_EVERY` writes: its thread runs ``PRAGMA wal_checkpoint(PASSIVE)`` on
a connection of its own while the turns go on (a passive checkpoint never blocks a
writer nor waits for one; pages still in use are copied by a later one).

Durability is unchanged: a turn is in the log file when its ``COMMIT`` returns, and a
log not yet copied is read (and copied) by the next connection that opens the file.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from pathlib import Path

__all__ = ["CHECKPOINT_EVERY", "Checkpointer"]

logger = logging.getLogger(__name__)

CHECKPOINT_EVERY = 64
"""Writes between two checkpoints (~256 log pages of 4 KiB at four pages a turn)."""

_STOP = "stop"
_CHECKPOINT = "checkpoint"


class Checkpointer:
    """Checkpoints one SQLite file's write-ahead log in a daemon thread, when asked.

    Requests made while one runs are merged into the next. :meth:`stop` ends the
    thread after the checkpoint it is in; the next request starts a new one.

    Args:
        path: The database file.
        every: Writes counted by :meth:`wrote` between two checkpoints.
    """

    def __init__(self, path: Path, every: int = CHECKPOINT_EVERY) -> None:
        self.path = path
        self.every = every
        self.checkpoints = 0
        """Checkpoints run so far (each ``PRAGMA wal_checkpoint(PASSIVE)``)."""
        self._writes = 0
        self._requests: queue.SimpleQueue[str] | None = None
        self._pending = threading.Event()
        self._lock = threading.Lock()
        self._served = threading.Condition()
        self._asked = 0
        self._done = 0

    def __repr__(self) -> str:
        return f"Checkpointer({str(self.path)!r}, every={self.every})"

    def wrote(self) -> None:
        """Count one committed write; every ``every``-th asks for a checkpoint."""
        with self._lock:
            self._writes += 1
            if self._writes < self.every:
                return
            self._writes = 0
        self.request()

    def request(self) -> None:
        """Ask for a checkpoint soon (one already asked for and not begun covers this one)."""
        with self._lock:
            if self._pending.is_set():
                return
            self._pending.set()
            self._asked += 1
            if self._requests is None:
                self._requests = queue.SimpleQueue()
                threading.Thread(
                    target=self._serve,
                    args=(self._requests,),
                    name=f"llmgine-checkpoint-{self.path.name}",
                    daemon=True,
                ).start()
            self._requests.put(_CHECKPOINT)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the checkpoints asked for so far have run; whether they did in time."""
        with self._lock:
            asked = self._asked
        with self._served:
            return self._served.wait_for(lambda: self._done >= asked, timeout)

    def stop(self) -> None:
        """End the thread once the checkpoints already asked for are done."""
        with self._lock:
            requests, self._requests = self._requests, None
            self._pending.clear()
        if requests is not None:
            requests.put(_STOP)

    def _serve(self, requests: queue.SimpleQueue[str]) -> None:
        db: sqlite3.Connection | None = None
        try:
            while requests.get() != _STOP:
                self._pending.clear()
                try:
                    if db is None:
                        db = sqlite3.connect(self.path, isolation_level=None, timeout=0)
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error:  # a busy or vanished file: the next request tries again
                    logger.debug("A WAL checkpoint of %s failed", self.path, exc_info=True)
                with self._served:
                    self._done += 1
                    self._served.notify_all()
        finally:
            if db is not None:
                db.close()
