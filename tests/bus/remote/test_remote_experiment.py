"""An experiment with ``bus=`` only: its rows run on two worker processes through Redis.

The workers are ``map_app``'s (an engine on the test's slow fake server, named after
the worker's pid); the scores are computed and published in the calling process.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import StartWorker

from llmgine.bus import MessageBus
from llmgine.evals import EvaluationEvent, Experiment, arun_experiment, contains
from llmgine.testing import FakeOpenAIServer

ROWS = 8


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    """The model the workers ask (echoes each prompt after 0.3 s); caches in tmp_path."""
    (tmp_path / "runs").mkdir()
    monkeypatch.setenv("MAP_APP_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("LLMGINE_CACHE_DIR", str(tmp_path / "cache"))
    with FakeOpenAIServer(delay=0.3) as fake:
        monkeypatch.setenv("MAP_APP_BASE_URL", fake.base_url)
        yield fake


def polite(output: Any, expected: Any, row: Any) -> bool:
    return "please" in str(output)


@pytest.mark.timeout(240)
async def test_an_experiments_rows_spread_over_two_workers_and_are_scored_here(
    caller: MessageBus, start_worker: StartWorker, server: FakeOpenAIServer
) -> None:
    first = await asyncio.to_thread(start_worker, "map_app:setup", max_concurrency=2)
    second = await asyncio.to_thread(start_worker, "map_app:setup", max_concurrency=2)
    events: list[EvaluationEvent] = []
    caller.register_event_handler(EvaluationEvent, events.append)
    data = pd.DataFrame({"item": [f"item {i}" for i in range(ROWS)]})
    experiment = await asyncio.wait_for(
        arun_experiment(
            data,
            variants={
                "plain": {"prompt": "Describe {item}"},
                "polite": {"prompt": "Describe {item}, please"},
            },
            scorers=[contains, polite],
            expected="item",
            concurrency=4,
            bus=caller,
            name="remote",
            progress=False,
        ),
        timeout=200,
    )
    await caller.wait_for_events()
    results = experiment.results
    assert results["error"].isna().all(), results["error"].dropna().tolist()
    assert len(results) == 2 * ROWS
    plain = results[results["variant"] == "plain"]
    assert plain["output"].tolist() == [f"Echo: Describe item {i}" for i in range(ROWS)]
    asked_by = Counter(int(r["model"].rsplit("-", 1)[1]) for r in server.requests)
    assert set(asked_by) == {first.pid, second.pid}, asked_by
    assert len(server.requests) == 2 * ROWS
    summary = experiment.summary()
    assert summary.loc["plain", "score.contains"] == 1.0
    assert summary.loc["plain", "score.polite"] == 0.0
    assert summary.loc["polite", "score.polite"] == 1.0
    assert len(events) == 2 * ROWS * 2
    assert caller.log_path is not None
    rebuilt = Experiment.from_log(caller.log_path, "remote")
    assert rebuilt.results["score.polite"].tolist() == results["score.polite"].tolist()
