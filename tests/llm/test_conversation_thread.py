"""The thread a store's blocking calls run in: one thread, in order, results and errors back."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from llmgine.llm.conversations.thread import StoreThread

pytestmark = pytest.mark.timeout(60)


async def test_calls_run_one_at_a_time_in_one_thread_in_the_order_made() -> None:
    store_thread, seen = StoreThread("test-store"), []

    def call(n: int) -> tuple[int, str]:
        seen.append(n)
        return n, threading.current_thread().name

    results = await asyncio.gather(*(store_thread.run(call, n) for n in range(20)))
    assert seen == list(range(20))
    assert results == [(n, "test-store") for n in range(20)]
    assert threading.current_thread().name != "test-store"
    store_thread.stop()


async def test_an_error_in_a_call_is_raised_where_it_was_awaited() -> None:
    store_thread = StoreThread("test-store")

    def broken() -> None:
        raise ValueError("the disk is full")

    with pytest.raises(ValueError, match="the disk is full"):
        await store_thread.run(broken)
    assert await store_thread.run(lambda: 7) == 7  # the thread goes on
    store_thread.stop()


async def test_a_call_whose_caller_was_cancelled_still_runs_to_its_end() -> None:
    store_thread, release, finished = StoreThread("test-store"), threading.Event(), []

    def slow_write() -> None:
        assert release.wait(30)
        finished.append("written")

    waiting = asyncio.create_task(store_thread.run(slow_write))
    await asyncio.sleep(0)  # let the task submit its call
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await store_thread.run(lambda: None)  # runs after the cancelled one
    assert finished == ["written"]
    store_thread.stop()


async def test_a_stopped_thread_finishes_its_calls_and_the_next_call_starts_one() -> None:
    store_thread = StoreThread("test-store")
    first = asyncio.ensure_future(store_thread.run(threading.current_thread))
    await asyncio.sleep(0)
    store_thread.stop()  # after the first call was made: it still runs
    old = await first
    old.join(30)
    assert not old.is_alive()
    new = await store_thread.run(threading.current_thread)
    assert new is not old and new.is_alive()
    store_thread.stop()
    new.join(30)
    assert not new.is_alive()


async def test_the_thread_ends_when_its_owner_is_garbage() -> None:
    store_thread = StoreThread("test-store")
    thread = await store_thread.run(threading.current_thread)
    del store_thread
    gc.collect()
    thread.join(30)
    assert not thread.is_alive()
