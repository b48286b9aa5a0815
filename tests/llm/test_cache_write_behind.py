"""Answers kept with ``SQLiteStore.put_soon``: queued, written a few at a time, never lost.

``put_soon`` returns at once; the answer waits up to ``WRITE_BEHIND_SECONDS`` for others
to share its transaction, less when anyone waits for the store meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cache_stores import CountingStore, GatedStore

from llmgine.llm.cache import LLMCache, SQLiteStore, sqlite_store
from llmgine.llm.cache.write_behind import WritesBehind, writes_behind
from llmgine.llm.types import Completion


def in_file(path: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {str(k): str(a) for k, a in db.execute("SELECT key, answer FROM calls")}


async def test_answers_kept_soon_are_written_without_anyone_waiting_for_them(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "calls.sqlite3")
    written = [store.put_soon(f"k{i}", f"answer {i}", provider="p", model="m") for i in range(5)]
    await asyncio.wait_for(asyncio.gather(*written), timeout=30)
    assert in_file(store.path) == {f"k{i}": f"answer {i}" for i in range(5)}
    await store.aclose()


async def test_answers_kept_soon_share_one_transaction_with_the_next_that_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "WRITE_BEHIND_SECONDS", 600.0)  # only a waiter ends it
    store = CountingStore(tmp_path / "calls.sqlite3")
    await store.put("first", "answer", provider="p", model="m")  # the file exists
    written = [store.put_soon(f"k{i}", "answer", provider="p", model="m") for i in range(20)]
    await asyncio.wait_for(store.put("waited", "answer", provider="p", model="m"), timeout=30)
    await asyncio.wait_for(asyncio.gather(*written), timeout=30)
    assert store.jobs == [1, 21]  # the 20 and the one waited for: one transaction
    assert len(in_file(store.path)) == 22
    await store.aclose()


async def test_a_read_is_not_held_up_by_answers_waiting_for_company(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "WRITE_BEHIND_SECONDS", 600.0)
    store = SQLiteStore(tmp_path / "calls.sqlite3")
    written = store.put_soon("soon", "answer", provider="p", model="m")
    assert await asyncio.wait_for(store.get("other"), timeout=30) is None
    await asyncio.wait_for(written, timeout=30)  # written first: the read went after it
    assert await store.get("soon") == "answer"
    await store.aclose()


async def test_a_write_kept_soon_that_fails_settles_its_future_with_the_error(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "calls.sqlite3")
    await store.put("first", "answer", provider="p", model="m")
    with contextlib.closing(sqlite3.connect(store.path)) as other:
        other.execute("DROP TABLE calls")
        other.commit()
    written = store.put_soon("k", "answer", provider="p", model="m")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await asyncio.wait_for(written, timeout=30)
    await store.aclose()


@pytest.mark.timeout(120)
def test_answers_kept_soon_reach_the_file_when_the_program_ends_without_waiting(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calls.sqlite3"
    script = textwrap.dedent(
        """
        import asyncio, sys
        from pathlib import Path
        from llmgine.llm.cache import SQLiteStore

        async def main() -> None:
            store = SQLiteStore(Path(sys.argv[1]))
            for i in range(5):
                store.put_soon(f"k{i}", "answer", provider="p", model="m")  # not awaited

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0, done.stderr
    assert sorted(in_file(path)) == [f"k{i}" for i in range(5)]


async def test_a_read_is_not_held_up_on_a_thread_already_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "WRITE_BEHIND_SECONDS", 600.0)
    store = SQLiteStore(tmp_path / "calls.sqlite3")
    await store.put("first", "answer", provider="p", model="m")  # the thread runs
    for i in range(5):
        written = store.put_soon(f"soon{i}", "answer", provider="p", model="m")
        assert await asyncio.wait_for(store.get("other"), timeout=30) is None
        await asyncio.wait_for(written, timeout=30)
    await store.aclose()


async def test_only_the_batchs_own_tasks_write_behind() -> None:
    behind = WritesBehind(limit=4)
    seen: dict[str, WritesBehind | None] = {}

    async def probe() -> WritesBehind | None:
        return writes_behind()

    async def row() -> None:
        seen["row"] = writes_behind()
        seen["thread"] = await asyncio.to_thread(writes_behind)  # a sync tool's thread
        seen["spawned"] = await asyncio.ensure_future(probe())  # a task the row started

    with behind.around():
        task = asyncio.ensure_future(row())
    behind.adopt([task])
    await asyncio.wait_for(task, timeout=30)
    assert seen == {"row": behind, "thread": None, "spawned": None}


async def test_an_answer_on_its_way_to_the_file_answers_identical_requests_with_no_memory(
    tmp_path: Path,
) -> None:
    store = GatedStore(tmp_path / "calls.sqlite3")
    cache = LLMCache(store=store, recent=0)  # no answers kept in memory
    behind = WritesBehind(limit=4)

    async def row() -> Completion | None:
        await cache.keep("k", Completion(content="kept"), provider="p", model="m")
        async with cache.serve("k") as hit:  # an identical request, the write held up
            return hit

    with behind.around():
        task = asyncio.ensure_future(row())
    behind.adopt([task])
    hit = await asyncio.wait_for(task, timeout=30)
    assert hit is not None and hit.content == "kept"
    store.gate.set()
    assert await asyncio.wait_for(behind.wait(), timeout=30) == 0
    assert in_file(store.path) == {"k": Completion(content="kept").model_dump_json()}
    await cache.aclose()


def test_a_write_that_fails_after_the_program_left_its_loop_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = GatedStore(tmp_path / "calls.sqlite3")
    store.gate.set()
    asyncio.run(store.put("first", "answer", provider="p", model="m"))  # the table exists
    with contextlib.closing(sqlite3.connect(store.path)) as other:
        other.execute("DROP TABLE calls")
        other.commit()
    store.gate.clear()

    async def queue() -> None:
        store.put_soon("k", "answer", provider="p", model="m")  # not awaited: the loop ends

    asyncio.run(queue())
    with caplog.at_level(logging.WARNING, logger="llmgine.llm.cache"):
        store.gate.set()
        store.run_blocking(lambda: None)  # after the write job
    assert "could not keep 1 answer(s) after the program's event loop ended" in caplog.text
    assert "no such table" in caplog.text
    asyncio.run(store.aclose())
