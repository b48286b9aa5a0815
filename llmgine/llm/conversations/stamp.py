"""A change stamp beside a SQLite file: whether anyone wrote it since, read without any I/O.

Every write of every :class:`~llmgine.llm.conversations.sqlite.SQLiteConversationStore`
on ``chats.db`` (in any process) rewrites the 8 bytes of ``chats.db-stamp`` with a new
random value, holding an exclusive ``flock`` on that file around its whole transaction:

1. a value marked *writing* before ``BEGIN IMMEDIATE``,
2. a clean value after ``COMMIT`` (or ``ROLLBACK``), before releasing the lock.

The file is mapped in memory (``mmap``), so reading the stamp is a memory read: the
event loop may do it. A store that saw the stamp at ``S`` (clean) and then read a
conversation knows, while the stamp still reads ``S``, that no one has written since:
a write changes the stamp before its transaction begins. A writer killed mid-write
leaves the *writing* mark, which no reader trusts, until the next write replaces it.

Writes by other programs than llmgine (the ``sqlite3`` shell) do not change the stamp:
a store sees them when the next llmgine write changes it, or when reopened.
"""

from __future__ import annotations

import logging
import mmap
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["WRITING", "Stamp"]

logger = logging.getLogger(__name__)

WRITING = 1 << 63
"""The mark of a stamp set before a transaction (cleared by the stamp set after it)."""

_SIZE = 8


class Stamp:
    """The change stamp of one SQLite file, mapped in this process (opened at first use).

    Args:
        database: The SQLite file; its stamp is ``<database>-stamp``, beside the file a
            symbolic link points to (as SQLite names its ``-wal`` file), made if missing.
        timeout: Seconds a write waits for another process's write to finish.
    """

    def __init__(self, database: Path, timeout: float = 30.0) -> None:
        self.database = database.absolute()  # a later os.chdir does not move it
        self.path = self.database.with_name(self.database.name + "-stamp")
        """The stamp file (where the database's links lead once opened)."""
        self.timeout = timeout
        self._lock = threading.Lock()
        """Threads of this process take turns (``flock`` excludes other open files only)."""
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._failed = False

    def __repr__(self) -> str:
        return f"Stamp({str(self.path)!r})"

    def read(self) -> int | None:
        """The stamp now (a memory read, no I/O); ``None`` when the file is not open."""
        mapped = self._map
        if mapped is None:
            return None
        try:
            return int.from_bytes(mapped[:_SIZE], "little")
        except ValueError:  # closed meanwhile by another thread
            return None

    def open(self) -> bool:
        """Map the file (blocking I/O: call it off the event loop); whether it is usable.

        A folder where the file cannot be made (read-only) or a system without ``flock``
        leaves the stamp unused: every load then reads the database.
        """
        with self._lock:
            return self._map is not None or (not self._failed and self._open())

    def _open(self) -> bool:
        self.path = Path(os.path.realpath(self.database) + "-stamp")
        try:
            import fcntl  # noqa: F401  (not on Windows)

            try:  # whoever may write the database may write its stamp (as its -wal file)
                mode = os.stat(self.database).st_mode & 0o666
            except OSError:
                mode = 0o644
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, mode)
            try:
                if os.fstat(fd).st_size < _SIZE:
                    os.ftruncate(fd, _SIZE)  # never shrinks a stamp another process set
                self._map = mmap.mmap(fd, _SIZE)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        except (ImportError, OSError, ValueError):
            logger.debug("No change stamp at %s: every load reads the database", self.path)
            self._failed = True
            return False
        return True

    @contextmanager
    def writing(self) -> Iterator[int | None]:
        """Hold the write lock around a transaction; yields the clean stamp set after it.

        Yields ``None`` when the stamp is unusable (the transaction runs without it).

        Raises:
            sqlite3.OperationalError: Another process held the lock for ``timeout``
                seconds (what SQLite raises when its own lock is held as long).
        """
        if not self.open():
            yield None
            return
        import fcntl

        after = _new()
        with self._lock:
            if self._fd is None and not self._open():  # closed by another thread since
                yield None
                return
            assert self._fd is not None
            self._lock_file(self._fd)
            try:
                self._set(_new() | WRITING)
                try:
                    yield after
                finally:
                    self._set(after)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _lock_file(self, fd: int) -> None:
        import fcntl

        deadline, pause = time.monotonic() + self.timeout, 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise sqlite3.OperationalError(
                        f"database is locked: another process has been writing {self.path} "
                        f"for {self.timeout:g} s; raise busy_timeout or stop that process"
                    ) from None
                time.sleep(pause)  # in the store's thread, never on the event loop
                pause = min(pause * 2, 0.005)

    def _set(self, value: int) -> None:
        assert self._map is not None
        self._map[:_SIZE] = value.to_bytes(_SIZE, "little")

    def close(self) -> None:
        """Unmap and close the file (:meth:`open` maps it again)."""
        with self._lock:
            mapped, fd, self._map, self._fd = self._map, self._fd, None, None
            if mapped is not None:
                mapped.close()
            if fd is not None:
                os.close(fd)


def _new() -> int:
    """A new clean stamp (63 random bits, never 0: a new file reads 0)."""
    return random.getrandbits(63) or 1
