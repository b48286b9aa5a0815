"""Conversations in a SQLite file: one row per message, WAL, safe for several processes.

``LLMEngine(..., conversations="sqlite:///chats.db")``. A turn is one transaction
(``BEGIN IMMEDIATE`` ... ``COMMIT``, WAL with ``synchronous=NORMAL``): a process killed
mid-turn leaves the file as it was before the turn, and a turn whose prompt returned is
in the file (a power cut may lose the last turns, never half of one). Each thread has
its own connection (``engine.conversations`` runs these calls in a thread of its own
from async code).

A conversation this store read or wrote is kept parsed in memory. A turn's load serves
it from there without leaving the event loop when the file's change stamp (see
:mod:`llmgine.llm.conversations.stamp`) says no llmgine process wrote the file since;
otherwise the load reads the conversation's version in the file, in the thread.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from llmgine.errors import ConfigurationError
from llmgine.llm.conversations.conversation import tail
from llmgine.llm.conversations.database_path import database_path
from llmgine.llm.conversations.protocol import (
    ConversationSummary,
    StoredConversation,
    message_tokens,
)
from llmgine.llm.conversations.stamp import WRITING, Stamp
from llmgine.llm.types import ChatMessage

__all__ = ["SQLiteConversationStore"]

CACHED_CONVERSATIONS = 256
"""Conversations whose last turns a store keeps parsed in memory (the most recently used)."""


@dataclass(slots=True)
class _Cached:
    """A conversation's last turns as last read or written here, valid while ``version`` holds."""

    version: int
    system_prompt: str | None
    messages: list[ChatMessage]
    turns: list[int]
    limit: int | None
    """The ``last_messages`` it was read with: it serves loads of at most as many."""
    stamp: int | None
    """The file's change stamp when it was last known current (``None``: not known)."""


def _version() -> int:
    """A new version stamp of a conversation: every write sets one (a collision is 1 in 2**62)."""
    return random.getrandbits(62) + 1


_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    system_prompt TEXT,
    last_turn INTEGER NOT NULL DEFAULT 0,
    next_seq INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 0,
    last_activity REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    turn INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
"""


class SQLiteConversationStore:
    """Conversations in a SQLite file that outlives the process; several processes may share it.

    Args:
        path: The database file (created with its folder if missing); a relative one is
            from the current folder when the store is made (a later ``%cd`` does not move it).
        busy_timeout: Seconds a write waits for another process's write to finish.
    """

    blocking = True

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = database_path(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._ready = False  # the schema is made by the first connection, in its thread
        self._cache: dict[str, _Cached] = {}
        """Parsed last turns by conversation: a turn's load is one small query, not a parse."""
        self._stamp = Stamp(self.path, busy_timeout)

    def __repr__(self) -> str:
        return f"SQLiteConversationStore({str(self.path)!r})"

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(
                    self.path, timeout=self.busy_timeout, isolation_level=None,
                    check_same_thread=False,
                )  # fmt: skip
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                if not self._ready:
                    db.execute("BEGIN IMMEDIATE")
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute("COMMIT")
                    self._ready = True
            except (sqlite3.DatabaseError, OSError) as exc:  # not a database; no folder
                raise ConfigurationError(
                    f"Cannot use {self.path} as a conversation store ({exc}); give the path "
                    "of a new file (in a folder you may write) or of one llmgine made."
                ) from exc
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _write(self) -> Iterator[tuple[sqlite3.Connection, int | None]]:
        """A write transaction, under the change stamp (yields the stamp set after it)."""
        db = self._connection()
        with self._stamp.writing() as after:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db, after
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _seen_stamp(self) -> int | None:
        """The change stamp before a read, if clean (then a write after it changes it)."""
        stamp = self._stamp.read() if self._stamp.open() else None
        return None if stamp is None or stamp & WRITING else stamp

    def load_fresh(
        self, conversation_id: str, last_messages: int | None
    ) -> StoredConversation | None:
        """The conversation from memory, without I/O, if no one wrote the file since it was read.

        ``None`` when an llmgine process (this one included) wrote the file since this
        store last read or wrote the conversation: then :meth:`load` it. The event loop
        may call this: it reads the mapped change stamp and this store's parsed copy,
        nothing else.
        """
        stamp = self._stamp.read()
        if stamp is None or stamp & WRITING:
            return None
        with self._lock:
            cached = self._cache.get(conversation_id)
            if cached is None or cached.stamp != stamp:
                return None
            if cached.limit is not None and (last_messages is None or last_messages > cached.limit):
                return None
            start = tail(cached.turns, last_messages)
            return StoredConversation(
                cached.system_prompt, cached.messages[start:], cached.turns[start:]
            )

    def load(self, conversation_id: str, last_messages: int | None) -> StoredConversation | None:
        """The system prompt and the last whole turns (one read transaction).

        Served from the parsed copy this store keeps when the conversation's version
        stamp says no process wrote it since.
        """
        db = self._connection()
        stamp = self._seen_stamp()
        db.execute("BEGIN")
        try:
            row = db.execute(
                "SELECT system_prompt, version FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is None:
                self._forget(conversation_id)
                return None
            cached = self._cached(conversation_id, row[1], last_messages, stamp)
            if cached is None:
                rows = self._read_tail(db, conversation_id, last_messages)
        finally:
            db.execute("COMMIT")
        if cached is None:
            rows.reverse()
            turns = [int(turn) for turn, _ in rows]
            start = tail(turns, last_messages)
            system_prompt = None if row[0] is None else json.loads(row[0])
            cached = _Cached(
                row[1],
                system_prompt,
                [ChatMessage.model_validate_json(text) for _, text in rows[start:]],
                turns[start:],
                last_messages,
                stamp,
            )
            self._remember(conversation_id, cached)
        start = tail(cached.turns, last_messages)
        return StoredConversation(
            cached.system_prompt, cached.messages[start:], cached.turns[start:]
        )

    @staticmethod
    def _read_tail(
        db: sqlite3.Connection, conversation_id: str, last_messages: int | None
    ) -> list[tuple[int, str]]:
        """The rows (turn, message) of the last whole turns, newest first."""
        query = "SELECT turn, message FROM messages WHERE conversation_id = ? ORDER BY seq DESC"
        if last_messages is None:
            return db.execute(query, (conversation_id,)).fetchall()
        rows = db.execute(f"{query} LIMIT ?", (conversation_id, last_messages + 1)).fetchall()
        if len(rows) > last_messages:
            boundary = rows[last_messages][0]
            rows = [r for r in rows[:last_messages] if r[0] != boundary]
            if not rows:  # the newest turn alone is longer than the limit
                rows = db.execute(
                    "SELECT turn, message FROM messages WHERE conversation_id = ? "
                    "AND turn = (SELECT last_turn FROM conversations WHERE id = ?) "
                    "ORDER BY seq DESC",
                    (conversation_id, conversation_id),
                ).fetchall()
        return rows

    def _cached(
        self, conversation_id: str, version: int, limit: int | None, stamp: int | None
    ) -> _Cached | None:
        """The parsed copy if still at ``version`` (then current as of ``stamp``)."""
        with self._lock:
            cached = self._cache.get(conversation_id)
            if cached is None or cached.version != version:
                return None
            if cached.limit is not None and (limit is None or limit > cached.limit):
                return None
            cached.stamp = stamp
            return cached

    def _remember(self, conversation_id: str, cached: _Cached) -> None:
        with self._lock:
            self._cache.pop(conversation_id, None)
            self._cache[conversation_id] = cached
            while len(self._cache) > CACHED_CONVERSATIONS:
                del self._cache[next(iter(self._cache))]

    def _forget(self, *conversation_ids: str) -> None:
        with self._lock:
            for conversation_id in conversation_ids:
                self._cache.pop(conversation_id, None)

    def append_turn(
        self, conversation_id: str, messages: Sequence[ChatMessage], system_prompt: str | None
    ) -> int:
        """Add one turn in one transaction."""
        now, version = time.time(), _version()
        with self._write() as (db, stamp):
            row = db.execute(
                "SELECT last_turn + 1, next_seq, version FROM conversations WHERE id = ?",
                (conversation_id,),
            ).fetchone()
            turn, seq, before = (1, 0, None) if row is None else row
            db.executemany(
                "INSERT INTO messages (conversation_id, seq, turn, tokens, message) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (conversation_id, seq + i, turn, message_tokens(m), m.model_dump_json())
                    for i, m in enumerate(messages)
                ],
            )
            db.execute(  # a conversation's system prompt is set once, by its first write
                "INSERT INTO conversations "
                "(id, system_prompt, last_turn, next_seq, version, last_activity) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "last_turn = excluded.last_turn, next_seq = excluded.next_seq, "
                "version = excluded.version, last_activity = excluded.last_activity",
                (
                    conversation_id,
                    json.dumps(system_prompt),
                    turn,
                    seq + len(messages),
                    version,
                    now,
                ),
            )
        with self._lock:  # what this process wrote extends its parsed copy
            cached = self._cache.get(conversation_id)
            if cached is not None and cached.version == before:
                cached.messages += messages
                cached.turns += [int(turn)] * len(messages)
                start = tail(cached.turns, cached.limit)
                del cached.messages[:start], cached.turns[:start]
                cached.version, cached.stamp = version, stamp
            else:
                self._cache.pop(conversation_id, None)
        return int(turn)

    def set_system_prompt(self, conversation_id: str, system_prompt: str | None) -> None:
        """Set a conversation's system prompt."""
        with self._write() as (db, _):
            db.execute(
                "INSERT INTO conversations (id, system_prompt, version, last_activity) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "system_prompt = excluded.system_prompt, version = excluded.version, "
                "last_activity = excluded.last_activity",
                (conversation_id, json.dumps(system_prompt), _version(), time.time()),
            )
        self._forget(conversation_id)

    def clear(self, conversation_id: str) -> bool:
        """Forget a conversation's messages."""
        with self._write() as (db, _):
            db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
            updated = db.execute(
                "UPDATE conversations SET last_turn = 0, next_seq = 0, version = ? WHERE id = ?",
                (_version(), conversation_id),
            )
        self._forget(conversation_id)
        return updated.rowcount > 0

    def delete(self, conversation_id: str) -> bool:
        """Forget a conversation."""
        with self._write() as (db, _):
            db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
            deleted = db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
        self._forget(conversation_id)
        return deleted.rowcount > 0

    def fork(self, conversation_id: str, new_id: str, at_turn: int | None) -> bool:
        """Copy a conversation up to a turn, in one transaction."""
        last = at_turn if at_turn is not None else 2**62
        with self._write() as (db, _):
            row = db.execute(
                "SELECT system_prompt FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM messages WHERE conversation_id = ?", (new_id,))
            db.execute(
                "INSERT INTO messages (conversation_id, seq, turn, tokens, message) "
                "SELECT ?, seq, turn, tokens, message FROM messages "
                "WHERE conversation_id = ? AND turn <= ?",
                (new_id, conversation_id, last),
            )
            turn, seq = db.execute(
                "SELECT COALESCE(MAX(turn), 0), COALESCE(MAX(seq) + 1, 0) FROM messages "
                "WHERE conversation_id = ?",
                (new_id,),
            ).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO conversations "
                "(id, system_prompt, last_turn, next_seq, version, last_activity) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (new_id, row[0], turn, seq, _version(), time.time()),
            )
        self._forget(new_id)
        return True

    def summaries(self) -> list[ConversationSummary]:
        """One row per conversation (one query)."""
        rows = (
            self._connection()
            .execute(
                "SELECT c.id, COUNT(DISTINCT m.turn), COUNT(m.seq), COALESCE(SUM(m.tokens), 0), "
                "c.last_activity FROM conversations c LEFT JOIN messages m "
                "ON m.conversation_id = c.id GROUP BY c.id"
            )
            .fetchall()
        )
        return [ConversationSummary(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def exists(self, conversation_id: str) -> bool:
        """Whether the file has the conversation."""
        row = (
            self._connection()
            .execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,))
            .fetchone()
        )
        return row is not None

    def close(self) -> None:
        """Close every connection this store opened (each thread opens a new one if used again)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()
        self._local = threading.local()
        self._forget(*list(self._cache))
        self._stamp.close()
