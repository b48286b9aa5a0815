"""Many commands waiting at once over Redis: no connection per waiting call, none fails."""

from __future__ import annotations

import asyncio

import pytest
import remote_app
from conftest import StartWorker

from llmgine.bus import MessageBus


@pytest.mark.timeout(240)
async def test_three_hundred_concurrent_executes_through_one_worker_all_succeed(
    caller: MessageBus, start_worker: StartWorker
) -> None:
    await asyncio.to_thread(start_worker, max_concurrency=16)
    commands = [remote_app.AddCommand(a=i, b=1) for i in range(300)]
    results = await asyncio.wait_for(
        asyncio.gather(*(caller.execute(c, timeout=150) for c in commands)), timeout=200
    )
    failed = [r.error for r in results if not r.success]
    assert failed == []
    assert [r.result for r in results] == [i + 1 for i in range(300)]
