"""The call cache's SQLite file: where it lives, WAL, two processes, damaged and foreign files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from counting_model import Counting, request

from llmgine.bus import MessageBus
from llmgine.errors import CacheError, ConfigurationError
from llmgine.llm import LLMEngine, PromptCommand
from llmgine.llm.cache import LLMCache, default_cache_dir
from llmgine.llm.cache.recent import RecentAnswers
from llmgine.llm.cache.sqlite_store import APPLICATION_ID
from llmgine.llm.pipeline import Cached
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import Completion, LLMRequest

HERE = Path(__file__).parent

pytestmark = pytest.mark.timeout(120)


def test_the_default_file_is_in_the_users_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMGINE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert LLMCache().path == tmp_path / "home" / ".cache" / "llmgine" / "calls.sqlite3"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "llmgine"
    monkeypatch.setenv("LLMGINE_CACHE_DIR", str(tmp_path / "moved"))
    assert LLMCache().path == tmp_path / "moved" / "calls.sqlite3"


async def test_the_cache_file_and_the_folders_made_for_it_are_readable_by_their_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMGINE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)  # the user's folder: left as it is
    monkeypatch.setenv("HOME", str(home))
    before = os.umask(0o022)
    try:
        cache = LLMCache()
        await Cached(Counting(), cache).complete(request("patient 17"))
        await cache.aclose()
    finally:
        os.umask(before)

    def mode(path: Path) -> int:
        return path.stat().st_mode & 0o777

    assert mode(home) == 0o755
    assert mode(home / ".cache") == mode(home / ".cache" / "llmgine") == 0o700
    folder = home / ".cache" / "llmgine"
    assert mode(folder / "calls.sqlite3") == 0o600
    assert all(mode(f) & 0o077 == 0 for f in folder.iterdir())  # its -wal and -shm too


def test_a_folder_holds_the_cache_file_and_a_file_path_is_the_file(tmp_path: Path) -> None:
    assert LLMCache(tmp_path).path == tmp_path / "calls.sqlite3"
    assert LLMCache(tmp_path / "mine.db").path == tmp_path / "mine.db"


@pytest.mark.parametrize(
    "setting",
    [
        "redis://:hunter2@127.0.0.1:6379/0",
        "rediss://bob:hunter2@cache.example:6380/1",
        " redis://127.0.0.1:6379/0?password=hunter2",
        "sqlite:///calls.sqlite3?token=hunter2",
    ],
)
async def test_a_url_is_refused_as_a_cache_without_repeating_its_secret_or_making_folders(
    bus: MessageBus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(ConfigurationError) as caught:
        LLMEngine(bus, model="offline", cache=setting)
    message = str(caught.value)
    assert "hunter2" not in message
    assert "cache='redis' on a bus connected with `await bus.connect(url)`" in message
    assert "give its path" in message
    with pytest.raises(ConfigurationError) as direct:
        LLMCache(setting)
    assert "hunter2" not in str(direct.value)
    assert list(work.iterdir()) == []


async def test_the_file_is_made_with_its_folder_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "calls.sqlite3"
    cache = LLMCache(path)
    await Cached(Counting(), cache).complete(request("hi"))
    await cache.aclose()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


async def test_stats_and_clear_work_from_sync_and_async_code(tmp_path: Path) -> None:
    cache = LLMCache(tmp_path / "calls.sqlite3")
    step = Cached(Counting(), cache)
    for prompt in ["a", "b", "a", "c", "a"]:
        await step.complete(request(prompt))
    stats = cache.stats()  # sync, as a notebook cell calls it
    assert (stats.hits, stats.misses, stats.entries) == (2, 3, 3)
    assert stats.hit_rate == 0.4
    assert stats.size_bytes > 0 and stats.path == tmp_path / "calls.sqlite3"
    assert stats.location == str(tmp_path / "calls.sqlite3")
    assert (await cache.astats()).entries == 3
    assert cache.clear() == 3
    assert (await cache.astats()).entries == 0
    await step.complete(request("a"))
    assert await cache.aclear() == 1
    await cache.aclose()


async def test_the_answers_used_last_are_also_in_memory_and_clear_empties_both(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calls.sqlite3"
    cache = LLMCache(path, recent=2)
    provider = Counting()
    step = Cached(provider, cache)
    for prompt in ["a", "b", "c"]:
        await step.complete(request(prompt))
    await cache.aclose()
    path.unlink()  # the file is gone; the two used last are still answered
    hits = [await step.complete(request(p)) for p in ["b", "c"]]
    assert [h.cached for h in hits] == [True, True] and provider.calls == 3
    hits[0].content = "changed by the caller"
    assert (await step.complete(request("b"))).content == "answer to b"
    assert (await step.complete(request("a"))).cached is False  # dropped out first
    assert len(cache.recent) == 2
    assert await cache.aclear() == 1  # the new file held only "a"
    assert len(cache.recent) == 0
    assert (await step.complete(request("b"))).cached is False
    await cache.aclose()


async def test_a_clear_empties_the_memory_of_every_cache_on_that_file_in_this_process(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calls.sqlite3"
    provider = Counting()
    one, other = LLMCache(path), LLMCache(tmp_path / "." / "calls.sqlite3")
    step = Cached(provider, one)
    await step.complete(request("a"))
    assert (await step.complete(request("a"))).cached is True  # now in one's memory
    assert await other.aclear() == 1
    assert (await step.complete(request("a"))).cached is False and provider.calls == 2
    assert other.clear() == 1  # the sync clear too
    assert (await step.complete(request("a"))).cached is False and provider.calls == 3
    await one.aclose()
    await other.aclose()


async def test_clearing_the_default_file_reaches_the_cache_an_engine_without_one_uses(
    bus: MessageBus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMGINE_CACHE_DIR", str(tmp_path / "cache"))
    model = Counting()
    LLMEngine(bus, provider=model)  # no cache of its own: cache=True is the default file

    async def ask() -> bool:
        result = await bus.execute(
            PromptCommand(prompt="hi", conversation_id=uuid.uuid4().hex, cache=True)
        )
        assert result.success, result.error
        return bool(result.metadata["cached"])

    assert [await ask(), await ask()] == [False, True]
    store = LLMCache()
    assert await store.aclear() == 1
    await store.aclose()
    assert await ask() is False and model.calls == 2


def test_stats_and_clear_work_where_no_event_loop_runs(tmp_path: Path) -> None:
    cache = LLMCache(tmp_path / "calls.sqlite3")
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries, stats.hit_rate) == (0, 0, 0, 0.0)
    assert cache.clear() == 0
    cache.close()


async def test_a_closed_cache_opens_again_when_used(tmp_path: Path) -> None:
    cache = LLMCache(tmp_path / "calls.sqlite3")
    step = Cached(Counting(), cache)
    await step.complete(request("a"))
    await cache.aclose()
    assert (await step.complete(request("a"))).cached
    cache.close()


def started(path: Path, write: str, read: str) -> subprocess.Popen[str]:
    script = [sys.executable, str(HERE / "cache_process.py"), str(path), write, read, "60", "20"]
    return subprocess.Popen(
        script, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def said(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        assert process.stderr is not None
        raise AssertionError(f"the cache process ended early:\n{process.stderr.read()}")
    return line.strip()


def go(*processes: subprocess.Popen[str]) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()


def test_two_processes_write_one_file_at_once_and_read_each_others_answers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calls.sqlite3"
    a, b = started(path, "a", "b"), started(path, "b", "a")
    try:
        assert [said(a), said(b)] == ["ready", "ready"]
        go(a, b)  # both write at the same time: 60 prompts of their own, 20 shared
        assert [said(a), said(b)] == ["written", "written"]
        go(a, b)  # each reads the other's 60
        reports = [json.loads(said(a)), json.loads(said(b))]
        assert [a.wait(30), b.wait(30)] == [0, 0]
    finally:
        for process in (a, b):
            if process.poll() is None:
                process.kill()
                process.wait()
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
    for report, other in zip(reports, "ba", strict=True):
        assert report["read_calls"] == 0  # every answer came from the other process
        assert report["read"] == [f"answer to {other}{i}" for i in range(60)]
        assert all(report["cached"])
        assert 60 <= report["written_calls"] <= 80  # shared prompts: whoever came first
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM calls").fetchone()[0] == 140
    db.close()


async def test_a_file_that_is_not_a_database_is_moved_aside_and_a_new_cache_started(
    bus: MessageBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "calls.sqlite3"
    path.write_bytes(b"these are not the bytes of a database\n" * 100)
    provider = Counting()
    engine = LLMEngine(bus, provider=provider, cache=path)
    with caplog.at_level(logging.WARNING, logger="llmgine.llm.cache"):
        assert await engine.chat("hi", conversation_id="a") == "answer to hi"
    assert await engine.chat("hi", conversation_id="b") == "answer to hi"
    assert provider.calls == 1  # the new cache answered the second
    [moved] = tmp_path.glob("calls.sqlite3.corrupt-*")  # noqa: ASYNC240
    assert moved.read_bytes().startswith(b"these are not the bytes")
    [warning] = [r.getMessage() for r in caplog.records if r.name.startswith("llmgine.llm.cache")]
    assert str(path) in warning and str(moved) in warning


class Long(Provider):
    """Answers 3 kB of text."""

    name = "long"

    async def complete(self, request: LLMRequest) -> Completion:
        return Completion(content=f"{request.messages[-1].content} " + "x" * 3000)


async def test_a_file_damaged_during_a_batch_never_fails_a_prompt(
    bus: MessageBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "calls.sqlite3"
    cache = LLMCache(path, recent=0)  # the file only
    filler = Cached(Long("long-1"), cache)
    for i in range(1500):  # more than SQLite keeps in memory: later reads go to the file
        await filler.complete(request(f"fill {i}"))
    provider = Counting()
    engine = LLMEngine(bus, provider=provider, cache=cache)
    path.write_bytes(b"\x00garbage" * 400_000)  # damaged under the open connection
    with caplog.at_level(logging.WARNING, logger="llmgine.llm.cache"):
        refilled = [await filler.complete(request(f"fill {i}")) for i in range(3)]
        answers = [await engine.chat(f"row {i}", conversation_id=f"b{i}") for i in range(5)]
    assert [r.content for r in refilled] == [f"fill {i} " + "x" * 3000 for i in range(3)]
    assert answers == [f"answer to row {i}" for i in range(5)]
    [moved] = [r.getMessage() for r in caplog.records if "was moved to" in r.getMessage()]
    assert str(path) in moved
    calls = provider.calls
    assert await engine.chat("row 1", conversation_id="d") == "answer to row 1"
    assert provider.calls == calls  # the new file works
    await cache.aclose()


async def test_another_programs_database_is_left_alone_with_an_error_naming_it(
    bus: MessageBus, tmp_path: Path
) -> None:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        db.execute("INSERT INTO orders (item) VALUES ('tea')")
    db.close()
    LLMEngine(bus, provider=Counting(), cache=path)
    result = await bus.execute(PromptCommand(prompt="hi"))
    assert not result.success
    assert result.error_type == "CacheError"
    assert str(path) in str(result.error) and "orders" in str(result.error)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT item FROM orders").fetchall() == [("tea",)]
    db.close()


async def test_a_cache_of_a_newer_llmgine_is_an_error_saying_to_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 99")
    db.close()
    cache = LLMCache(path)
    with pytest.raises(CacheError, match="newer llmgine"):
        await Cached(Counting(), cache).complete(request("hi"))
    await cache.aclose()


async def test_a_stored_answer_that_does_not_read_is_asked_again_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "calls.sqlite3"
    cache = LLMCache(path, recent=0)  # the file only
    provider = Counting()
    step = Cached(provider, cache)
    await step.complete(request("hi"))
    await cache.aclose()
    with sqlite3.connect(path) as db:
        db.execute('UPDATE calls SET answer = \'{"content": 3, "surprise": true}\'')
    db.close()
    with caplog.at_level(logging.WARNING, logger="llmgine.llm.cache"):
        assert (await step.complete(request("hi"))).content == "answer to hi"
    assert (await step.complete(request("hi"))).cached
    assert provider.calls == 2
    assert any("does not read as an answer" in r.getMessage() for r in caplog.records)
    await cache.aclose()


async def test_lookups_cancelled_while_the_file_is_read_leave_the_cache_working(
    tmp_path: Path,
) -> None:
    cache = LLMCache(tmp_path / "calls.sqlite3", recent=0)  # every lookup reads the file
    provider = Counting()
    step = Cached(provider, cache)
    await step.complete(request("a"))
    problems: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: problems.append(context))
    for _ in range(20):
        lookup = asyncio.ensure_future(step.complete(request("a")))
        await asyncio.sleep(0)  # its read is on the store's thread now
        lookup.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lookup
    assert (await step.complete(request("a"))).cached
    await cache.aclose()  # every read handed back by now
    await asyncio.sleep(0)
    assert problems == [] and provider.calls == 1


async def test_a_rerun_of_a_few_thousand_prompts_is_answered_from_memory(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite3"
    cache = LLMCache(path)  # the default number of answers in memory
    provider = Counting()
    step = Cached(provider, cache)
    prompts = [f"row {i}" for i in range(2_000)]  # a batch's rows, then the batch again
    for prompt in prompts:
        await step.complete(request(prompt))
    await cache.aclose()
    path.unlink()  # every answer of the re-run must come from memory
    again = [await step.complete(request(p)) for p in prompts]
    assert all(a.cached for a in again) and provider.calls == len(prompts)
    assert [a.content for a in again] == [f"answer to {p}" for p in prompts]
    await cache.aclose()


def test_the_answers_in_memory_are_bounded_by_the_memory_their_text_takes() -> None:
    ascii_40, emoji_40 = "a" * 40, "\N{GRINNING FACE}" * 40  # 1 and 4 bytes a character
    assert sys.getsizeof(emoji_40) > 3 * sys.getsizeof(ascii_40) / 2
    recent = RecentAnswers(10, max_bytes=2 * sys.getsizeof(ascii_40) + sys.getsizeof("b" * 10))
    for key in "abc":
        recent.put(key, key * 40)
    assert (recent.get("a"), len(recent)) == (None, 2)  # the oldest went
    assert recent.bytes == 2 * sys.getsizeof(ascii_40)
    recent.put("b", "b" * 10)  # replaced: its old text no longer counts
    assert recent.bytes == sys.getsizeof(ascii_40) + sys.getsizeof("b" * 10)
    assert recent.get("b") == "b" * 10
    recent.put("wide", emoji_40)  # as many characters, four times the bytes: both others go
    assert (len(recent), recent.get("c"), recent.get("wide")) == (1, None, emoji_40)
    recent.put("long", "x" * 1000)  # more than the bound: not kept, nothing dropped for it
    assert (recent.get("long"), len(recent)) == (None, 1)
    recent.clear()
    assert (len(recent), recent.bytes) == (0, 0)


def test_a_path_ending_with_a_separator_is_a_folder_for_the_cache_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert LLMCache("answers/").path == tmp_path / "answers" / "calls.sqlite3"
    assert LLMCache(f"{tmp_path}/deeper/answers/").path == (
        tmp_path / "deeper" / "answers" / "calls.sqlite3"
    )


async def test_a_new_folder_given_with_a_separator_is_made_and_holds_the_cache_file(
    bus: MessageBus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    engine = LLMEngine(bus, model="offline", cache="newdir/")
    await engine.chat("Hi", conversation_id="a")
    assert (tmp_path / "newdir").is_dir()
    assert (tmp_path / "newdir" / "calls.sqlite3").is_file()
    await engine.aclose()


@pytest.mark.parametrize("setting", ["afile/calls.sqlite3", "afile/", "afile/deeper/x.db"])
def test_a_cache_under_a_file_is_a_configuration_error_when_the_engine_is_made(
    bus: MessageBus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("notes")
    with pytest.raises(ConfigurationError, match="which is a file, not a folder") as caught:
        LLMEngine(bus, model="offline", cache=setting)
    assert str(tmp_path / "afile") in str(caught.value)
    assert (tmp_path / "afile").read_text() == "notes"


def test_a_default_cache_folder_that_is_a_file_is_a_configuration_error_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "afile").write_text("notes")
    monkeypatch.setenv("LLMGINE_CACHE_DIR", str(tmp_path / "afile"))
    with pytest.raises(ConfigurationError, match="LLMGINE_CACHE_DIR"):
        LLMCache()


async def test_a_relative_cache_path_stays_where_it_was_when_the_folder_changes(
    bus: MessageBus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    engine = LLMEngine(bus, model="offline", cache="calls.sqlite3")
    monkeypatch.chdir(tmp_path / "b")  # as %cd in a notebook
    await engine.chat("Hi", conversation_id="a")
    await engine.aclose()
    assert (tmp_path / "a" / "calls.sqlite3").is_file()
    assert list((tmp_path / "b").iterdir()) == []


async def test_answers_kept_at_once_are_all_in_the_file_when_each_keep_returns(
    tmp_path: Path,
) -> None:
    from llmgine.llm.cache import SQLiteStore

    store = SQLiteStore(tmp_path / "calls.sqlite3")

    async def keep(i: int) -> str | None:
        await store.put(f"k{i}", f"answer {i}", provider="p", model="m")
        return await store.get(f"k{i}")  # in the file once its own put returned

    read = await asyncio.gather(*(keep(i) for i in range(60)))
    assert read == [f"answer {i}" for i in range(60)]
    assert (await store.size()).entries == 60
    await store.aclose()


async def test_a_write_that_fails_fails_every_keep_waiting_on_it(tmp_path: Path) -> None:
    from llmgine.llm.cache import SQLiteStore

    path = tmp_path / "calls.sqlite3"
    store = SQLiteStore(path)
    await store.put("first", "answer", provider="p", model="m")  # the file and table exist
    with contextlib.closing(sqlite3.connect(path)) as other:
        other.execute("DROP TABLE calls")
        other.commit()
    puts = [store.put(f"k{i}", "answer", provider="p", model="m") for i in range(10)]
    outcomes = await asyncio.gather(*puts, return_exceptions=True)
    assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes), outcomes
    await store.aclose()


async def test_a_keep_whose_write_could_not_start_leaves_the_next_keeps_working(
    tmp_path: Path,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from llmgine.llm.cache import SQLiteStore

    class ShutDownOnce(SQLiteStore):
        """The executor shut down by a close racing the first keep (as at exit)."""

        def __init__(self, path: Path) -> None:
            super().__init__(path)
            self.refused = 0

        def _thread(self) -> ThreadPoolExecutor:
            if self.refused == 0:
                self.refused += 1
                raise RuntimeError("cannot schedule new futures after shutdown")
            return super()._thread()

    store = ShutDownOnce(tmp_path / "calls.sqlite3")
    with pytest.raises(RuntimeError, match="after shutdown"):
        await store.put("lost", "answer", provider="p", model="m")
    await asyncio.wait_for(store.put("kept", "answer", provider="p", model="m"), timeout=30)
    assert await store.get("kept") == "answer" and await store.get("lost") is None
    await store.aclose()


async def test_a_full_disk_in_a_batch_is_the_error_each_keep_gets(tmp_path: Path) -> None:
    from llmgine.llm.cache import SQLiteStore

    class TinyFile(SQLiteStore):
        def _connect(self) -> sqlite3.Connection:
            connection = super()._connect()
            connection.execute("PRAGMA max_page_count = 12")
            return connection

    store = TinyFile(tmp_path / "calls.sqlite3")
    await store.put("first", "x", provider="p", model="m")
    puts = [store.put(f"k{i}", "y" * 3000, provider="p", model="m") for i in range(20)]
    outcomes = await asyncio.wait_for(asyncio.gather(*puts, return_exceptions=True), 30)
    errors = {str(o) for o in outcomes if isinstance(o, BaseException)}
    assert errors == {"database or disk is full"}, errors
    await store.aclose()
