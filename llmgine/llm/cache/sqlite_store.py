"""Cached answers in a SQLite file (stdlib ``sqlite3``, WAL), on a thread of its own.

Every statement runs on the store's one thread, never on the event loop. WAL mode and
a busy timeout let several processes read and write one file at once: readers never
wait, writers take turns. A file that is not a SQLite database (or is damaged) is moved
aside with a warning and a new cache started; another program's database, or one made
by a newer llmgine, is left alone and named in a :class:`~llmgine.errors.CacheError`.
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

from llmgine.errors import CacheError
from llmgine.llm.cache.paths import make_private_file
from llmgine.llm.cache.store import StoreSize

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SQLiteStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

APPLICATION_ID = 0x4C4C4D43
"""``PRAGMA application_id`` of an llmgine call cache ("LLMC"): how a file is known as ours."""
SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the tables below."""
BUSY_TIMEOUT_MS = 30_000
"""How long a write waits for another process's write to finish."""
VACUUM_WAIT_MS = 1_000
"""How long ``clear()`` waits to give the space back while other processes use the file."""
_KEYS_A_QUERY = 500
"""Keys one ``get_many`` query asks for (SQLite allows 999 parameters in old builds)."""

_Put = tuple[tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[None]"]
"""An answer to keep (its row), and the loop and future of the caller waiting for it."""
_INSERT = (
    "INSERT OR REPLACE INTO calls (key, answer, provider, model, created_at) VALUES (?, ?, ?, ?, ?)"
)
_HEADER = b"SQLite format 3\x00"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    answer TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


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
        try:
            loop.call_soon_threadsafe(_settle_all, futures, error)
        except RuntimeError:  # the loop closed while the work ran: nobody waits any more
            logger.debug("The event loop closed before the call cache's write was done.")


def _settle_all(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if error is None:
            _set_result(future, None)
        else:
            _set_exception(future, error)


def _hand_over(
    loop: asyncio.AbstractEventLoop,
    setter: Callable[[asyncio.Future[Any], Any], None],
    future: asyncio.Future[Any],
    outcome: Any,
) -> None:
    """From the store's thread: ``setter(future, outcome)`` on ``loop``, if it still runs."""
    try:
        loop.call_soon_threadsafe(setter, future, outcome)
    except RuntimeError:  # the loop closed while the work ran: nobody waits any more
        logger.debug("The event loop closed before the call cache's work was handed back.")


def _not_sqlite(path: Path) -> str | None:
    """Why ``path`` cannot be a SQLite database, or ``None`` (missing and empty files can)."""
    try:
        with path.open("rb") as f:
            head = f.read(len(_HEADER))
    except FileNotFoundError:
        return None
    if head and head != _HEADER:
        return "it is not a SQLite database"
    return None


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
        return self._thread().submit(work).result()

    # ------------------------------------------------------------------ opening

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = self._open()
        return self._connection

    def _connect(self) -> sqlite3.Connection:
        make_private_file(self.path)  # else SQLite makes it readable by everyone (0644)
        connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return connection

    def _open(self) -> sqlite3.Connection:
        problem = _not_sqlite(self.path)
        if problem is not None:
            self._move_aside(problem)
        try:
            return self._connect_prepared()
        except sqlite3.OperationalError:
            raise  # locked, read-only, disk full: the file may well be fine
        except sqlite3.DatabaseError as error:  # damaged: not a database, malformed
            self._move_aside(str(error))
        return self._connect_prepared()

    def _connect_prepared(self) -> sqlite3.Connection:
        connection = self._connect()
        try:
            self._prepare(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        """Check the file is an llmgine cache (or new), then set WAL mode and the tables."""
        # One read transaction: the header and the tables of one moment, so a cache
        # another process is making right now is not taken for another program's file.
        connection.execute("BEGIN")
        try:
            application_id, version = self._identity(connection)
            tables = [
                row[0]
                for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
        finally:
            connection.execute("COMMIT")
        if application_id != APPLICATION_ID:
            if application_id != 0 or tables:
                raise CacheError(
                    f"{self.path} is a SQLite database of another program (tables: "
                    f"{', '.join(tables) or 'none'}), not llmgine's call cache; llmgine leaves it "
                    "alone. Give the cache a file of its own: LLMEngine(cache='calls.sqlite3'), "
                    "or set LLMGINE_CACHE_DIR to another folder."
                )
        elif version > SCHEMA_VERSION:
            raise CacheError(
                f"{self.path} is a call cache of a newer llmgine (format {version}; this one "
                f"reads {SCHEMA_VERSION}). Upgrade llmgine, or give this one another file: "
                "LLMEngine(cache='calls.sqlite3') or LLMGINE_CACHE_DIR=another folder."
            )
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        if application_id == APPLICATION_ID:
            return
        connection.execute("BEGIN IMMEDIATE")  # one process makes the tables; the others wait
        try:
            if self._identity(connection)[0] != APPLICATION_ID:
                connection.execute(_SCHEMA)
                connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    @staticmethod
    def _identity(connection: sqlite3.Connection) -> tuple[int, int]:
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        return int(application_id), int(version)

    def _move_aside(self, why: str) -> None:
        """Rename the damaged file (and its WAL files) out of the way, keeping them."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        moved = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                os.replace(source, f"{moved}{suffix}")
        logger.warning(
            "The call cache %s could not be read (%s): it was moved to %s and a new, empty "
            "cache started in its place. Delete the moved file once you no longer need it.",
            self.path,
            why,
            moved,
        )

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
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        entry: _Put = ((key, answer, provider, model, time.time()), loop, done)
        starts = False
        try:
            with self._lock:
                self._puts.append(entry)
                starts = not self._writing  # else the job on its way takes this one too
                self._writing = True
            if starts:
                self._thread().submit(self._write_puts)
        except BaseException:  # an interrupt, an executor shut down meanwhile
            self._unqueue(entry, starts)
            raise
        await done

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

    def _write_puts(self) -> None:
        """On the store's thread: write every answer waiting, then tell each caller."""
        with self._lock:
            puts, self._puts, self._writing = self._puts, [], False
        if not puts:
            return
        rows = [row for row, _, _ in puts]

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
