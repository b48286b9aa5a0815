"""A timeout that fires as the handler finishes: the caller learns what Redis recorded."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import remote_app
from conftest import StartWorker

from llmgine.bus import MessageBus
from llmgine.bus.remote.caller import ABANDONED

TIMEOUT = 0.3
TRIES = 60


@pytest.mark.timeout(240)
async def test_a_reply_recorded_before_the_timeout_abandons_it_is_the_callers_result(
    caller: MessageBus, start_worker: StartWorker, client: Any, namespace: str, tmp_path: Path
) -> None:
    directory = tmp_path / "runs"
    directory.mkdir()
    await asyncio.to_thread(start_worker)
    assert (await caller.execute(remote_app.AddCommand(a=1, b=1), timeout=30)).success
    took = []
    for _ in range(5):  # the round trip of a command that takes no time, here and now
        start = time.monotonic()
        quick = remote_app.SlowCommand(seconds=0, runs_dir=str(directory))
        assert (await caller.execute(quick, timeout=30)).success
        took.append(time.monotonic() - start)
    overhead = sorted(took)[2]
    results = []
    for i in range(TRIES):
        # Handlers whose replies come in a sweep around the moment the caller gives up.
        seconds = max(0.0, TIMEOUT - overhead - 0.07 + 0.08 * i / TRIES)
        command = remote_app.SlowCommand(seconds=seconds, runs_dir=str(directory))
        results.append(await caller.execute(command, timeout=TIMEOUT))
    # Each execute() left one record: the worker's reply, or its caller's abandon.
    records = [await client.get(key) async for key in client.scan_iter(f"{namespace}:result:*")]
    assert len(records) == TRIES + 6
    replies = sum(record != ABANDONED for record in records) - 6  # the calibration's
    succeeded = sum(r.success for r in results)
    assert {r.error_type for r in results if not r.success} <= {"TimeoutError"}
    # Whenever the worker's reply was recorded first, the command's effect happened and
    # the caller was told so; whenever the abandon was, the caller was told it timed out.
    assert succeeded == replies, f"{replies} replies recorded, {succeeded} successes"
    assert 0 < succeeded < TRIES
