"""Opening the call cache's SQLite file: ours, new, another program's, or damaged.

A file that is not a SQLite database (or is damaged) is moved aside with a warning and a
new cache started; another program's database, or one made by a newer llmgine, is left
alone and named in a :class:`~llmgine.errors.CacheError`. A new file is made readable by
its owner only, in WAL mode with a busy timeout, so several processes share it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from llmgine.errors import CacheError
from llmgine.llm.cache.paths import make_private_file

__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT_MS",
    "SCHEMA_VERSION",
    "connect",
    "identity",
    "move_aside",
    "not_sqlite",
    "prepare",
]

logger = logging.getLogger(__name__)

APPLICATION_ID = 0x4C4C4D43
"""``PRAGMA application_id`` of an llmgine call cache ("LLMC"): how a file is known as ours."""
SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the tables below."""
BUSY_TIMEOUT_MS = 30_000
"""How long a write waits for another process's write to finish."""

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


def not_sqlite(path: Path) -> str | None:
    """Why ``path`` cannot be a SQLite database, or ``None`` (missing and empty files can)."""
    try:
        with path.open("rb") as f:
            head = f.read(len(_HEADER))
    except FileNotFoundError:
        return None
    if head and head != _HEADER:
        return "it is not a SQLite database"
    return None


def connect(path: Path) -> sqlite3.Connection:
    """A connection to ``path`` (made readable by its owner only), in autocommit mode."""
    make_private_file(path)  # else SQLite makes it readable by everyone (0644)
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return connection


def prepare(connection: sqlite3.Connection, path: Path) -> None:
    """Check the file is an llmgine cache (or new), then set WAL mode and the tables.

    Raises:
        CacheError: Another program's database, or a cache of a newer llmgine.
    """
    # One read transaction: the header and the tables of one moment, so a cache
    # another process is making right now is not taken for another program's file.
    connection.execute("BEGIN")
    try:
        application_id, version = identity(connection)
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
    finally:
        connection.execute("COMMIT")
    if application_id != APPLICATION_ID:
        if application_id != 0 or tables:
            raise CacheError(
                f"{path} is a SQLite database of another program (tables: "
                f"{', '.join(tables) or 'none'}), not llmgine's call cache; llmgine leaves it "
                "alone. Give the cache a file of its own: LLMEngine(cache='calls.sqlite3'), "
                "or set LLMGINE_CACHE_DIR to another folder."
            )
    elif version > SCHEMA_VERSION:
        raise CacheError(
            f"{path} is a call cache of a newer llmgine (format {version}; this one "
            f"reads {SCHEMA_VERSION}). Upgrade llmgine, or give this one another file: "
            "LLMEngine(cache='calls.sqlite3') or LLMGINE_CACHE_DIR=another folder."
        )
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    if application_id == APPLICATION_ID:
        return
    connection.execute("BEGIN IMMEDIATE")  # one process makes the tables; the others wait
    try:
        if identity(connection)[0] != APPLICATION_ID:
            connection.execute(_SCHEMA)
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def identity(connection: sqlite3.Connection) -> tuple[int, int]:
    """The file's ``application_id`` and ``user_version``."""
    application_id = connection.execute("PRAGMA application_id").fetchone()[0]
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    return int(application_id), int(version)


def move_aside(path: Path, why: str) -> None:
    """Rename the damaged file (and its WAL files) out of the way, keeping them."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    moved = path.with_name(f"{path.name}.corrupt-{stamp}-{os.getpid()}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.replace(source, f"{moved}{suffix}")
    logger.warning(
        "The call cache %s could not be read (%s): it was moved to %s and a new, empty "
        "cache started in its place. Delete the moved file once you no longer need it.",
        path,
        why,
        moved,
    )
