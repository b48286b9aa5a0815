"""``map`` with ``bus=`` only: the rows run on worker processes through Redis.

Each worker (``map_app``) holds an ``LLMEngine`` on the test's fake server, which answers
slowly, so a batch lasts seconds and spreads over the workers; each worker notes every
answer its model gave (``map_app``), so the tests count completions per row.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import map_app
import pandas as pd
import pytest
from conftest import StartWorker

from llmgine.batch import amap
from llmgine.bus import MessageBus
from llmgine.testing import FakeOpenAIServer

ROWS = 24


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the workers note their answers; their default cache file is in tmp_path too."""
    folder = tmp_path / "runs"
    folder.mkdir()
    monkeypatch.setenv("MAP_APP_RUNS", str(folder))
    monkeypatch.setenv("LLMGINE_CACHE_DIR", str(tmp_path / "cache"))
    return folder


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    """The model the workers ask: echoes each prompt after 0.4 s."""
    with FakeOpenAIServer(delay=0.4) as fake:
        monkeypatch.setenv("MAP_APP_BASE_URL", fake.base_url)
        yield fake


def reviews(n: int = ROWS) -> pd.DataFrame:
    return pd.DataFrame({"review": [f"review number {i}" for i in range(n)]})


def completions(runs: Path) -> list[tuple[int, str]]:
    """Every answer a worker's model gave: (worker pid, prompt)."""
    lines = [line for f in runs.glob("*.txt") for line in f.read_text().splitlines()]
    return [(int(pid), prompt) for pid, prompt in (line.split("\t", 1) for line in lines)]


async def until(condition: object, what: str, timeout: float = 60) -> None:
    """Polls another process's state (its file) until ``condition()`` holds, bounded."""
    assert callable(condition)
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


@pytest.mark.timeout(240)
async def test_map_on_a_bus_alone_spreads_the_rows_over_two_workers_each_row_once(
    caller: MessageBus, start_worker: StartWorker, server: FakeOpenAIServer, runs: Path
) -> None:
    first = await asyncio.to_thread(start_worker, "map_app:setup", max_concurrency=2)
    second = await asyncio.to_thread(start_worker, "map_app:setup", max_concurrency=2)
    frame = reviews()
    result = await asyncio.wait_for(caller_map(caller, frame, concurrency=4), timeout=180)
    assert result.index.equals(frame.index)
    assert result["error"].isna().all(), result["error"].dropna().tolist()
    prompts = [f"Classify: {r}" for r in frame["review"]]
    assert result["output"].tolist() == [f"Echo: {p}" for p in prompts]
    workers = {first.pid, second.pid}
    # Which worker asked for each row: the model it sends is named after its pid.
    asked_by = Counter(int(r["model"].rsplit("-", 1)[1]) for r in server.requests)
    assert set(asked_by) == workers, asked_by
    done = completions(runs)
    assert Counter(p for _, p in done) == Counter(prompts)  # every row asked once, no more
    assert {pid for pid, _ in done} == workers
    assert len(server.requests) == ROWS


async def caller_map(bus: MessageBus, frame: pd.DataFrame, **settings: Any) -> pd.DataFrame:
    """``map`` with ``bus=`` only: no engine in this process, the workers answer."""
    return await amap(frame, "Classify: {review}", bus=bus, progress=False, **settings)


@pytest.mark.timeout(300)
async def test_a_worker_killed_mid_batch_loses_no_row_and_completes_none_twice(
    caller: MessageBus, start_worker: StartWorker, server: FakeOpenAIServer, runs: Path
) -> None:
    first = await asyncio.to_thread(
        start_worker, "map_app:setup", claim_after=1.0, max_concurrency=2
    )
    second = await asyncio.to_thread(
        start_worker, "map_app:setup", claim_after=1.0, max_concurrency=2
    )
    frame = reviews()
    batch = asyncio.create_task(caller_map(caller, frame, concurrency=4))

    def first_is_mid_row() -> bool:
        answered = sum(pid == first.pid for pid, _ in completions(runs))
        asked = sum(r["model"] == f"worker-{first.pid}" for r in list(server.requests))
        return answered >= 2 and asked > answered  # it has rows done and one waiting

    await until(first_is_mid_row, "the first worker answered rows and waits on another")
    first.kill()
    result = await asyncio.wait_for(batch, timeout=240)

    assert result["error"].isna().all(), result["error"].dropna().tolist()
    prompts = [f"Classify: {r}" for r in frame["review"]]
    assert result["output"].tolist() == [f"Echo: {p}" for p in prompts]
    done = completions(runs)
    assert Counter(p for _, p in done) == Counter(prompts)  # none lost, none completed twice
    assert {pid for pid, _ in done} == {first.pid, second.pid}
    # The rows the first worker was asking for when it died were asked again by the second.
    assert len(server.requests) > ROWS


@pytest.mark.timeout(240)
async def test_an_output_type_of_an_importable_module_comes_back_from_a_worker_as_columns(
    caller: MessageBus, start_worker: StartWorker, server: FakeOpenAIServer, runs: Path
) -> None:
    for score in (0.25, 0.5, 0.75):
        server.add_text(f'{{"label": "positive", "score": {score}}}')
    worker = await asyncio.to_thread(start_worker, "map_app:setup")
    frame = reviews(3)
    result = await asyncio.wait_for(
        caller_map(caller, frame, output_type=map_app.Sentiment, concurrency=3), timeout=180
    )
    assert result["error"].isna().all(), result["error"].dropna().tolist()
    assert list(result.columns[:2]) == ["label", "score"]
    assert result["label"].tolist() == ["positive"] * 3
    assert sorted(result["score"]) == [0.25, 0.5, 0.75]
    assert {r["model"] for r in server.requests} == {f"worker-{worker.pid}"}
    assert frame.join(result).shape == (3, 1 + len(result.columns))
