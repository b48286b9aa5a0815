"""Cached answers in a SQLite file (stdlib ``sqlite3``, WAL), on a thread of its own.

Every statement runs on the store's one thread, never on the event loop. WAL mode and
a busy timeout let several processes read and write one file at once: readers never
wait, writers take turns. How the file is opened (and a damaged one moved aside, another
program's left alone) is :mod:`llmgine.llm.cache.sqlite_file`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from llmgine.llm.cache.sqlite_file import (
    APPLICATION_ID,
    BUSY_TIMEOUT_MS,
    SCHEMA_VERSION,
    connect,
    move_aside,
    not_sqlite,
    prepare,
)
from llmgine.llm.cache.store import StoreSize

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "WRITE_BEHIND_SECONDS", "SQLiteStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

VACUUM_WAIT_MS = 1_000
"""How long ``clear()`` waits to give the space back while other processes use the file."""
_KEYS_A_QUERY = 500
"""Keys one ``get_many`` query asks for (SQLite allows 999 parameters in old builds)."""

WRITE_BEHIND_SECONDS = 0.01
"""How long an answer kept by :meth:`SQLiteStore.put_soon` waits for others to share its
transaction (less when anyone waits for the store meanwhile)."""

_Put = tuple[tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[None]"]
"""An answer to keep (its row), and the loop and future of its caller."""
_INSERT = (
    "INSERT OR REPLACE INTO calls (key, answer, provider, model, created_at) VALUES (?, ?, ?, ?, ?)"
)


def _set_result(future: asyncio.Future[T], result: T) -> None:
    if not future.done():  # the awaiting task may have been cancelled meanwhile
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _tell(puts: list[_Put], error: BaseException | None) -> None:
    """Settle the futures of ``puts`` on their loops: done, or failed with ``error``."""
    waiting: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for _, loop, future in puts:
        waiting.setdefault(loop, []).append(future)
    for loop, futures in waiting.items():
        if not _hand_over(loop, _settle_all, futures, error) and error is not None:
            # Nobody is left to hear it (the program's loop is gone): say it here.
            logger.warning(
                "The call cache could not keep %d answer(s) after the program's event loop "
                "ended: %s",
                len(futures),
                error,
            )


def _settle_all(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if error is None:
            _set_result(future, None)
        else:
            _set_exception(future, error)


def _hand_over(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> bool:
    """From the store's thread: ``callback(*args)`` on ``loop``, if it still runs (whether)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop closed while the work ran: nobody waits any more
        logger.debug("The event loop closed before the call cache's work was handed back.")
        return False
    return True


class SQLiteStore:
    """Answers in the SQLite file ``path`` (made with its folder on first use).

    Args:
        path: The database file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._puts: list[_Put] = []
        """Answers waiting for the store's thread to write them (see :meth:`put`)."""
        self._writing = False
        """Whether a job that writes :attr:`_puts` is on its way to the store's thread."""
        self._urgent = threading.Event()
        """Set when someone waits for the store: a job waiting for more answers stops waiting."""

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    @property
    def location(self) -> str:
        """The file's path."""
        return str(self.path)

    # ------------------------------------------------------------------ threads

    def _thread(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="llmgine-cache")
            return self._executor

    async def _run(self, work: Callable[[], T]) -> T:
        """``work()`` on the store's thread; the event loop goes on meanwhile.

        The thread hands the outcome to the loop itself (one ``call_soon_threadsafe``):
        half the cost of ``run_in_executor``'s two chained futures, paid by every lookup.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._urgent.set()  # not held up by a write waiting for company

        def job() -> None:
            try:
                result = work()
            except BaseException as error:  # handed to the awaiting task, raised there
                _hand_over(loop, _set_exception, done, error)
            else:
                _hand_over(loop, _set_result, done, result)

        self._thread().submit(job)
        return await done

    def run_blocking(self, work: Callable[[], T]) -> T:
        """``work()`` on the store's thread, waiting for it here (the sync API)."""
        self._urgent.set()
        return self._thread().submit(work).result()

    # ------------------------------------------------------------------ opening

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = self._open()
        return self._connection

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def _open(self) -> sqlite3.Connection:
        problem = not_sqlite(self.path)
        if problem is not None:
            move_aside(self.path, problem)
        try:
            return self._connect_prepared()
        except sqlite3.OperationalError:
            raise  # locked, read-only, disk full: the file may well be fine
        except sqlite3.DatabaseError as error:  # damaged: not a database, malformed
            move_aside(self.path, str(error))
        return self._connect_prepared()

    def _connect_prepared(self) -> sqlite3.Connection:
        connection = self._connect()
        try:
            prepare(connection, self.path)
        except BaseException:
            connection.close()
            raise
        return connection

    def _forget_on_damage(self, work: Callable[[sqlite3.Connection], T]) -> Callable[[], T]:
        """``work`` on the connection; damage found later closes it, so the next use reopens."""

        def run() -> T:
            try:
                return work(self._db())
            except sqlite3.OperationalError:
                raise
            except sqlite3.DatabaseError:
                self._close()
                raise

        return run

    # ------------------------------------------------------------------ the store

    async def get(self, key: str) -> str | None:
        """The answer kept under ``key``, or ``None``."""

        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT answer FROM calls WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self._run(self._forget_on_damage(read))

    async def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The answers kept under any of ``keys``, by key: one trip to the store's thread."""
        wanted = list(dict.fromkeys(keys))

        def read(db: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(wanted), _KEYS_A_QUERY):
                part = wanted[start : start + _KEYS_A_QUERY]
                marks = ",".join("?" * len(part))
                rows = db.execute(f"SELECT key, answer FROM calls WHERE key IN ({marks})", part)
                found.update((str(k), str(a)) for k, a in rows)
            return found

        if not wanted:
            return {}
        return await self._run(self._forget_on_damage(read))

    async def put(self, key: str, answer: str, *, provider: str, model: str) -> None:
        """Keep ``answer`` under ``key``; return once it is in the file.

        Answers kept while the store's thread is busy are written together, in one
        transaction, by its next job (a batch's rows finish close together): each
        caller still returns only once its answer is in the file.
        """
        await self._queue(key, answer, provider, model, waits=True)

    def put_soon(self, key: str, answer: str, *, provider: str, model: str) -> asyncio.Future[None]:
        """Keep ``answer`` under ``key`` within :data:`WRITE_BEHIND_SECONDS`; return at once.

        The answer waits that long for others to share its transaction (a batch's rows
        write a few at a time). The future returned settles once it is in the file, or
        with the error that kept it out; nothing has to await it for the write to happen.
        """
        return self._queue(key, answer, provider, model, waits=False)

    def _queue(
        self, key: str, answer: str, provider: str, model: str, *, waits: bool
    ) -> asyncio.Future[None]:
        """Queue the answer for the next write job, starting one if none is on its way."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        entry: _Put = ((key, answer, provider, model, time.time()), loop, done)
        starts = False
        try:
            with self._lock:
                self._puts.append(entry)
                starts = not self._writing  # else the job on its way takes this one too
                self._writing = True
            if waits:
                self._urgent.set()
            if starts:
                self._thread().submit(self._write_puts if waits else self._write_puts_soon)
        except BaseException:  # an interrupt, an executor shut down meanwhile
            self._unqueue(entry, starts)
            raise
        return done

    def _unqueue(self, entry: _Put, started: bool) -> None:
        """A put that failed before its job left: take it back; the others still get written."""
        with self._lock:
            if entry in self._puts:
                self._puts.remove(entry)
            if not started:
                return  # a job on its way (or the next put's) takes the others
            self._writing = bool(self._puts)
            if not self._puts:
                return
        try:
            self._thread().submit(self._write_puts)
        except BaseException as exc:  # no thread to write them: each waiting caller hears it
            with self._lock:
                puts, self._puts, self._writing = self._puts, [], False
            _tell(puts, exc)

    def _write_puts_soon(self) -> None:
        """On the store's thread: let more answers come (unless someone waits), write them.

        ``_urgent`` is cleared only where the answers are taken: a caller that set it
        (a waited-for put still queued, a read behind this job) is never forgotten; at
        worst a later job skips its wait.
        """
        self._urgent.wait(WRITE_BEHIND_SECONDS)
        self._write_puts()

    def _write_puts(self) -> None:
        """On the store's thread: write every answer waiting, then tell each caller."""
        with self._lock:
            puts, self._puts, self._writing = self._puts, [], False
            self._urgent.clear()  # whoever set it is served by this job or runs after it
        if not puts:
            return
        rows = [row for row, *_ in puts]

        def write(db: sqlite3.Connection) -> None:
            if len(rows) == 1:
                db.execute(_INSERT, rows[0])
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_INSERT, rows)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite ends some (a full disk) itself
                    db.execute("ROLLBACK")
                raise

        error: BaseException | None = None
        try:
            self._forget_on_damage(write)()
        except BaseException as exc:  # handed to every waiting caller, raised there
            error = exc
        _tell(puts, error)

    def size_blocking(self) -> StoreSize:
        """How much the file holds, waiting here for the store's thread."""
        return self.run_blocking(self._forget_on_damage(self._size))

    async def size(self) -> StoreSize:
        """How much the file holds."""
        return await self._run(self._forget_on_damage(self._size))

    def _size(self, db: sqlite3.Connection) -> StoreSize:
        entries = int(db.execute("SELECT count(*) FROM calls").fetchone()[0])
        size = sum(
            os.stat(f"{self.path}{suffix}").st_size
            for suffix in ("", "-wal")
            if os.path.exists(f"{self.path}{suffix}")
        )
        return StoreSize(entries=entries, size_bytes=size)

    def clear_blocking(self) -> int:
        """Remove every answer, waiting here for the store's thread; return how many."""
        return self.run_blocking(self._forget_on_damage(self._clear))

    async def clear(self) -> int:
        """Remove every answer; return how many there were."""
        return await self._run(self._forget_on_damage(self._clear))

    def _clear(self, db: sqlite3.Connection) -> int:
        removed = db.execute("DELETE FROM calls").rowcount
        db.execute(f"PRAGMA busy_timeout = {VACUUM_WAIT_MS}")  # not 30 s with others reading
        try:
            db.execute("VACUUM")  # give the space back; needs a moment alone with the file
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError:
            logger.info("The call cache %s keeps its space until later.", self.path, exc_info=True)
        finally:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return int(removed)

    # ------------------------------------------------------------------ closing

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    async def aclose(self) -> None:
        """Close the file and end the thread; the store opens them again when used."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
            executor.shutdown(wait=False)

    def close(self) -> None:
        """:meth:`aclose` from synchronous code."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.submit(self._close).result()
            executor.shutdown(wait=False)
