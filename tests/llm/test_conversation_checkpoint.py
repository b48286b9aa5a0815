"""The SQLite store's WAL checkpoints run in a thread of their own, never in a turn's COMMIT."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from llmgine.llm import ChatMessage, SQLiteConversationStore
from llmgine.llm.conversations.checkpoint import Checkpointer

pytestmark = pytest.mark.timeout(60)


def turn(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text), ChatMessage(role="assistant", content="ok")]


def test_a_turns_commit_never_checkpoints_the_log(tmp_path: Path) -> None:
    store = SQLiteConversationStore(tmp_path / "c.db")
    store.append_turn("c", turn("a"), None)
    connection = store._connection()
    assert connection.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    store.close()


def test_the_checkpointer_copies_the_log_into_the_file_every_so_many_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    store = SQLiteConversationStore(path)
    checkpointer = store._checkpointer
    for i in range(checkpointer.every - 1):
        store.append_turn("c", turn(f"turn {i}"), None)
    assert checkpointer.wait(timeout=30)
    assert checkpointer.checkpoints == 0
    before = path.stat().st_size  # the schema only: the turns are all in the log
    store.append_turn("c", turn("the last"), None)
    assert checkpointer.wait(timeout=30)
    assert checkpointer.checkpoints == 1
    assert path.stat().st_size > before  # the turns were copied into the file
    with sqlite3.connect(path) as other:  # and another connection reads them all
        assert other.execute("SELECT COUNT(*) FROM messages").fetchone() == (
            2 * checkpointer.every,
        )
    store.close()


def test_stop_serves_the_checkpoints_asked_for_and_a_new_request_starts_a_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    SQLiteConversationStore(path).append_turn("c", turn("a"), None)
    checkpointer = Checkpointer(path, every=2)
    checkpointer.wrote()
    assert checkpointer.wait(timeout=30) and checkpointer.checkpoints == 0
    checkpointer.wrote()
    checkpointer.request()  # asked for again before the first one ran: one checkpoint
    checkpointer.stop()
    assert checkpointer.wait(timeout=30)
    assert 1 <= checkpointer.checkpoints <= 2
    checkpointer.request()  # a new thread after stop
    assert checkpointer.wait(timeout=30)
    assert checkpointer.checkpoints >= 2
    checkpointer.stop()
    assert "every=2" in repr(checkpointer)
