"""The SQLite store's change stamp: a conversation is served from memory only while no one wrote.

Another process is a real one where it matters (killed with SIGKILL mid-write); a
second store on the same file stands for one elsewhere.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from llmgine.llm import ChatMessage, SQLiteConversationStore
from llmgine.llm.conversations.stamp import WRITING, Stamp

pytestmark = pytest.mark.timeout(120)


def turn(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text), ChatMessage(role="assistant", content="ok")]


def test_any_write_to_the_file_ends_serving_from_memory_until_the_next_read(
    tmp_path: Path,
) -> None:
    one, two = (SQLiteConversationStore(tmp_path / "c.db") for _ in range(2))
    one.append_turn("c", turn("a"), None)
    assert one.load_fresh("c", 100) is None  # never read here yet
    assert one.load("c", 100) is not None
    fresh = one.load_fresh("c", 100)
    assert fresh is not None and [m.content for m in fresh.messages] == ["a", "ok"]
    one.append_turn("c", turn("b"), None)  # its own write keeps its copy current
    fresh = one.load_fresh("c", 100)
    assert fresh is not None and fresh.turns == [1, 1, 2, 2]
    assert one.load_fresh("c", 1000) is None  # more than it read: not in memory

    two.append_turn("elsewhere", turn("x"), None)  # another conversation: still a write
    assert one.load_fresh("c", 100) is None
    assert one.load("c", 100) is not None
    assert one.load_fresh("c", 100) is not None
    for change in (
        lambda: two.set_system_prompt("c", "New."),
        lambda: two.clear("c"),
        lambda: two.append_turn("c", turn("c"), None),
        lambda: two.fork("c", "d", None),
        lambda: two.delete("d"),
    ):
        change()
        assert one.load_fresh("c", 100) is None
        one.load("c", 100)
    loaded = one.load_fresh("c", 100)
    assert loaded is not None
    assert (loaded.system_prompt, [m.content for m in loaded.messages]) == ("New.", ["c", "ok"])
    one.close()
    two.close()


def test_a_store_opened_through_a_symbolic_link_sees_writes_through_the_real_path(
    tmp_path: Path,
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link.db").symlink_to(tmp_path / "real" / "c.db")
    linked, real = (
        SQLiteConversationStore(tmp_path / "link.db"),
        SQLiteConversationStore(tmp_path / "real" / "c.db"),
    )
    linked.append_turn("c", turn("a"), None)
    linked.load("c", 100)
    assert linked.load_fresh("c", 100) is not None
    real.append_turn("c", turn("b"), None)
    assert linked.load_fresh("c", 100) is None
    loaded = linked.load("c", 100)
    assert loaded is not None and loaded.turns == [1, 1, 2, 2]
    linked.close()
    real.close()


CHILD_KILLED_WHILE_WRITING = """
import pathlib, sys, time
from llmgine.llm.conversations.stamp import Stamp

db, marker = sys.argv[1], sys.argv[2]
with Stamp(pathlib.Path(db)).writing():
    pathlib.Path(marker).write_text("writing")
    time.sleep(600)
"""


def test_a_writer_killed_mid_write_leaves_a_mark_no_reader_trusts_and_no_lock(
    tmp_path: Path,
) -> None:
    db, marker = tmp_path / "c.db", tmp_path / "writing"
    store = SQLiteConversationStore(db)
    store.append_turn("c", turn("a"), None)
    store.load("c", 100)
    assert store.load_fresh("c", 100) is not None
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_KILLED_WHILE_WRITING, str(db), str(marker)]
    )
    try:
        while not marker.exists():
            assert child.poll() is None, "the child exited early"
            threading.Event().wait(0.05)  # polling another process's file, not the bus
        impatient = SQLiteConversationStore(db, busy_timeout=0.2)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            impatient.append_turn("c", turn("while another writes"), None)
        impatient.close()
    finally:
        child.kill()
        child.wait(timeout=30)
    stamp = Stamp(db)
    assert stamp.open()
    reading = stamp.read()
    assert reading is not None and reading & WRITING
    assert store.load_fresh("c", 100) is None
    store.load("c", 100)  # a read under the mark is not trusted either
    assert store.load_fresh("c", 100) is None
    store.append_turn("c", turn("b"), None)  # the kill released the lock; the write clears
    reading = stamp.read()
    assert reading is not None and not reading & WRITING
    fresh = store.load_fresh("c", 100)
    assert fresh is not None and fresh.turns == [1, 1, 2, 2]
    stamp.close()
    store.close()


def test_writers_take_turns_on_the_stamp(tmp_path: Path) -> None:
    """Each store opens the file on its own, as processes do: the lock is the file's."""
    first, second = Stamp(tmp_path / "s"), Stamp(tmp_path / "s")
    order: list[str] = []
    trying = threading.Event()

    def write_second() -> None:
        trying.set()
        with second.writing():
            order.append("second in")

    with first.writing() as after:
        reading = second.read() if second.open() else None
        assert reading is not None and reading & WRITING
        writer = threading.Thread(target=write_second)
        writer.start()
        assert trying.wait(30)
        writer.join(0.2)  # a little time to get in, which the lock refuses
        order.append("first out")
    writer.join(30)
    assert order == ["first out", "second in"]
    assert after is not None and second.read() != after  # the second write stamped anew
    first.close()
    second.close()


def test_a_folder_without_a_stamp_reads_the_file_every_time(tmp_path: Path) -> None:
    store = SQLiteConversationStore(tmp_path / "c.db")
    (tmp_path / "c.db-stamp").mkdir()  # the stamp cannot be made: a folder is in the way
    store.append_turn("c", turn("a"), None)
    assert store.load("c", 100) is not None
    assert store.load_fresh("c", 100) is None
    store.close()


def test_the_stamp_takes_the_permissions_of_its_database(tmp_path: Path) -> None:
    """Whoever may write the file may stamp it: a write that cannot stamp goes unseen."""
    db = tmp_path / "c.db"
    sqlite3.connect(db).close()
    db.chmod(0o640)
    store = SQLiteConversationStore(db)
    store.append_turn("c", turn("a"), None)
    assert (tmp_path / "c.db-stamp").stat().st_mode & 0o777 == 0o640
    store.close()
