"""``map``'s rows do not wait for the cache file; ``map`` returns once their answers are in it.

Each row's answer is queued for the file and written with the others that arrive within
``WRITE_BEHIND_SECONDS``, in one transaction; the row goes on at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from cache_stores import CountingStore, GatedStore

from llmgine.bus import MessageBus
from llmgine.llm import LLMCache, LLMEngine
from llmgine.llm.cache import sqlite_store
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import Completion, LLMRequest, Usage


class Echo(Provider):
    """Answers ``answer to <prompt>``; counts calls."""

    name = "echo"

    def __init__(self) -> None:
        super().__init__("echo-1")
        self.prompts: list[str] = []

    async def complete(self, request: LLMRequest) -> Completion:
        prompt = str(request.messages[-1].content)
        self.prompts.append(prompt)
        return Completion(content=f"answer to {prompt}", usage=Usage(input_tokens=4))


def reviews(n: int) -> pd.DataFrame:
    return pd.DataFrame({"review": [f"review {i}" for i in range(n)]})


def entries(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM calls").fetchone()[0])


async def test_rows_share_transactions_and_map_returns_once_all_are_in_the_file(
    bus: MessageBus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "WRITE_BEHIND_SECONDS", 1.0)  # a wide window
    store = CountingStore(tmp_path / "calls.sqlite3")
    cache = LLMCache(store=store)
    engine = LLMEngine(bus, provider=Echo(), cache=cache)
    result = await engine.map(reviews(6), "{review}", concurrency=1, progress=False)
    assert result["error"].isna().all()
    # One row at a time, yet fewer transactions than rows: no row waited for its own.
    assert sum(store.jobs) == 6 and len(store.jobs) < 6, store.jobs
    assert entries(store.path) == 6  # all in the file when map returned

    again = Echo()  # a new process, as after a kernel restart: only the file
    fresh = LLMEngine(bus, provider=again, cache=store.path)
    rerun = await fresh.map(reviews(6), "{review}", progress=False)
    assert again.prompts == [] and rerun["cached"].all()
    await fresh.aclose()
    await cache.aclose()


async def test_a_prompt_alone_still_returns_only_once_its_answer_is_in_the_file(
    bus: MessageBus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "WRITE_BEHIND_SECONDS", 600.0)  # would hang if used
    path = tmp_path / "calls.sqlite3"
    engine = LLMEngine(bus, provider=Echo(), cache=path)
    await engine.chat("Hi")
    assert entries(path) == 1
    await engine.aclose()


async def test_a_file_that_fails_behind_a_map_is_a_warning_and_its_rows_are_asked_again(
    bus: MessageBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "calls.sqlite3"
    model = Echo()
    engine = LLMEngine(bus, provider=model, cache=path)
    await engine.chat("first")  # the file and its table exist
    with contextlib.closing(sqlite3.connect(path)) as other:
        other.execute("DROP TABLE calls")  # every write from now on fails
        other.commit()
    with caplog.at_level(logging.DEBUG, logger="llmgine.llm.cache"):
        result = await engine.map(reviews(4), "{review}", progress=False)
    assert result["error"].isna().all()  # the calls succeeded: only keeping them failed
    kept = [r for r in caplog.records if "could not keep an answer" in r.getMessage()]
    assert len(kept) == 4 and all(r.exc_info for r in kept)  # each with its error
    assert any(r.levelno == logging.WARNING for r in caplog.records if "call cache" in r.msg)
    model.prompts.clear()
    with contextlib.closing(sqlite3.connect(path)) as other:
        other.execute(
            "CREATE TABLE calls (key TEXT PRIMARY KEY, answer TEXT NOT NULL, provider TEXT, "
            "model TEXT, created_at REAL)"
        )
        other.commit()
    rerun = await engine.map(reviews(4), "{review}", progress=False)
    # Not answered from memory either: what memory holds must be in the file.
    assert sorted(model.prompts) == [f"review {i}" for i in range(4)]
    assert not rerun["cached"].any()
    await engine.aclose()


class Counted(Echo):
    """Echo that says when it has been asked ``enough`` times."""

    def __init__(self, enough: int) -> None:
        super().__init__()
        self.enough = enough
        self.reached = asyncio.Event()

    async def complete(self, request: LLMRequest) -> Completion:
        answer = await super().complete(request)
        if len(self.prompts) >= self.enough:
            self.reached.set()
        return answer


class Stalled:
    """A 40-row ``map`` at concurrency 4 on a file held shut, run until it can go no further."""

    def __init__(self, bus: MessageBus, tmp_path: Path) -> None:
        self.store = GatedStore(tmp_path / "calls.sqlite3")
        self.cache = LLMCache(store=self.store)
        self.model = Counted(enough=8)
        engine = LLMEngine(bus, provider=self.model, cache=self.cache)
        self.mapped = asyncio.ensure_future(
            engine.map(reviews(40), "{review}", concurrency=4, progress=False)
        )

    async def stall(self) -> None:
        """Until 8 rows were asked (the first chunk's lookup opens the file on its thread),
        then on: whatever can go on has."""
        await asyncio.wait_for(self.model.reached.wait(), timeout=60)
        for _ in range(2_000):
            await asyncio.sleep(0)


async def test_at_most_concurrency_answers_wait_for_the_file_at_once(
    bus: MessageBus, tmp_path: Path
) -> None:
    run = Stalled(bus, tmp_path)
    await run.stall()
    # Four answers wait for the file; four rows wait for room: a kill loses no more.
    assert len(run.model.prompts) == 8
    run.store.gate.set()
    result = await asyncio.wait_for(run.mapped, timeout=60)
    assert result["error"].isna().all() and len(run.model.prompts) == 40
    await run.cache.aclose()


async def test_a_map_cancelled_while_the_file_is_locked_ends_at_once_and_says_so(
    bus: MessageBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = Stalled(bus, tmp_path)
    await run.stall()
    with caplog.at_level(logging.WARNING, logger="llmgine.batch"):
        run.mapped.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(run.mapped, timeout=60)  # the gate is still closed
    assert "still on their way to the cache file" in caplog.text
    assert "map stopped with" in caplog.text  # the run was finished: rows marked not run
    run.store.gate.set()
    await run.cache.aclose()  # the answers waiting are written
    assert entries(run.store.path) == 8
