"""Processes whose wall clocks disagree: who handles what is judged on the Redis server's clock."""

from __future__ import annotations

import asyncio

import pytest
import remote_app
from conftest import StartWorker

from llmgine.bus import MessageBus


@pytest.mark.timeout(120)
async def test_a_worker_whose_clock_is_slow_still_serves(
    caller: MessageBus, start_worker: StartWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKEWED_APP_SECONDS", "-10")
    await asyncio.to_thread(start_worker, "skewed_app:setup")
    result = await caller.execute(remote_app.AddCommand(a=2, b=3), timeout=30)
    assert (result.success, result.result) == (True, 5), result.error


async def advertised(caller: MessageBus) -> bool:
    assert caller.remote is not None
    return await caller.remote.handled_elsewhere(remote_app.AddCommand, fresh=True)


@pytest.mark.timeout(120)
async def test_a_killed_worker_whose_clock_is_fast_is_soon_seen_gone(
    caller: MessageBus, start_worker: StartWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKEWED_APP_SECONDS", "10")
    worker = await asyncio.to_thread(start_worker, "skewed_app:setup")
    assert await advertised(caller)
    await asyncio.to_thread(worker.kill)

    async def gone() -> None:
        for _ in range(1000):  # polls Redis's own state
            if not await advertised(caller):
                return
            await asyncio.sleep(0.05)

    # Its advert lasts three of its heartbeats (0.6 s), not ten seconds more.
    await asyncio.wait_for(gone(), timeout=4)
