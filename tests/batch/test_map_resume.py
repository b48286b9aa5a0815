"""A script running ``df.llmgine.map`` killed halfway (SIGKILL); run again, it sends only the rest.

The script (``map_script.py``) maps N rows on the fake server through an engine with no
cache: ``map`` keeps each answer in the default cache file as it comes, so the second run
asks the server only for rows whose answer the first run never got.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from llmgine.testing import FakeOpenAIServer

SCRIPT = Path(__file__).with_name("map_script.py")
ROWS = 40
CONCURRENCY = 4  # the script's: at most this many rows are in flight when it dies


def prompts(n: int = ROWS) -> list[str]:
    return [f"Classify ({i % 5 + 1} stars): review {i}" for i in range(n)]


def run_script(server: FakeOpenAIServer, cache: Path, out: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LLMGINE_CACHE_DIR": str(cache)}
    command = [sys.executable, str(SCRIPT), server.base_url, str(ROWS), str(out)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen[bytes]) -> None:
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 0, errors.decode(errors="replace")[-3000:]


def sent(server: FakeOpenAIServer) -> list[str]:
    """The prompt of every request the server got, in order."""
    return [str(body["messages"][-1]["content"]) for body in list(server.requests)]


@pytest.mark.timeout(300)
def test_a_map_killed_halfway_sends_only_the_unfinished_rows_when_run_again(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    with FakeOpenAIServer(delay=0.25) as server:
        first = run_script(server, cache, tmp_path / "first.pkl")
        try:
            deadline = time.monotonic() + 120
            while len(server.requests) < ROWS // 2:  # the server's own count, bounded
                assert first.poll() is None, first.communicate()[1].decode(errors="replace")
                assert time.monotonic() < deadline, "the script never sent half its rows"
                time.sleep(0.02)
        finally:
            first.kill()
            first.communicate(timeout=30)
        assert first.returncode == -9
        before = len(server.requests)
        assert before < ROWS  # killed halfway, not after the end

        finish(run_script(server, cache, tmp_path / "second.pkl"))
        again = sent(server)[before:]
        result = pd.read_pickle(tmp_path / "second.pkl")

        # Only the rows the first run never got an answer for were sent again, once each,
        # and they are the rows not answered from the cache. Paid twice: the rows in flight
        # when it died, and those answered in the last WRITE_BEHIND_SECONDS (their answers
        # still on their way to the file: at most one answer per row in flight).
        assert 0 < len(again) <= ROWS - before + 2 * CONCURRENCY
        assert before + len(again) <= ROWS + 2 * CONCURRENCY
        assert max(Counter(again).values()) == 1
        expected = prompts()
        not_cached = [p for p, c in zip(expected, result["cached"], strict=True) if not c]
        assert sorted(again) == sorted(not_cached)
        assert int(result["cached"].sum()) == ROWS - len(again)

        # Every row once, answered as a clean run answers it.
        assert result["error"].isna().all(), result["error"].dropna().tolist()
        assert result["output"].tolist() == [f"Echo: {p}" for p in expected]
        finish(run_script(server, tmp_path / "clean-cache", tmp_path / "clean.pkl"))
        clean = pd.read_pickle(tmp_path / "clean.pkl")
        columns = ["output", "error", "input_tokens", "output_tokens", "model"]
        pd.testing.assert_frame_equal(result[columns], clean[columns])
        assert not clean["cached"].any()
