"""Ctrl-C stops a ``map`` at once even while another program holds the cache file's lock.

The answers of the rows that finished wait for the file; the interrupted ``map`` waits for
them only a moment, returns, and they are written in the background once the lock is
gone (before the process exits): nothing finished is lost.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sqlite3, sys, threading, time
    from pathlib import Path
    import pandas as pd
    import llmgine  # noqa: F401
    from llmgine.bus import MessageBus
    from llmgine.llm import LLMCache, LLMEngine
    from llmgine.llm.providers.base import Provider
    from llmgine.llm.types import Completion, LLMRequest, Usage

    path = Path(sys.argv[1])
    CONCURRENCY = 4
    stalled, released, locked = threading.Event(), threading.Event(), threading.Event()

    class Model(Provider):
        name = "m"
        def __init__(self): super().__init__("m-1"); self.calls = 0
        async def complete(self, request: LLMRequest) -> Completion:
            self.calls += 1
            if self.calls == 1 + 2 * CONCURRENCY:  # the warm row, then as many as may wait
                stalled.set()
            await asyncio.sleep(0)
            return Completion(content="answer", usage=Usage(input_tokens=4))

    def hold() -> None:  # another program's long transaction
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN IMMEDIATE"); locked.set(); released.wait(120)
        db.execute("COMMIT"); db.close()

    interrupted_at = [0.0]

    def interrupt() -> None:  # Ctrl-C once the map waits for the file
        stalled.wait(120)
        interrupted_at[0] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    engine = LLMEngine(bus, provider=Model(), cache=LLMCache(path), retries=None)
    pd.DataFrame({"r": ["warm"]}).llmgine.map("{r}", engine=engine, progress=False)
    threading.Thread(target=hold, daemon=True).start(); locked.wait(120)
    threading.Thread(target=interrupt, daemon=True).start()
    frame = pd.DataFrame({"r": [str(i) for i in range(200)]})
    result = frame.llmgine.map("{r}", engine=engine, concurrency=CONCURRENCY, progress=False)
    print("seconds after Ctrl-C:", time.monotonic() - interrupted_at[0])
    print("rows done:", int(result["error"].isna().sum()))
    released.set()  # the other program commits: the answers waiting are written
    """
)


def entries(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM calls").fetchone()[0])


@pytest.mark.timeout(200)
def test_ctrl_c_returns_while_the_file_is_locked_and_loses_no_finished_row(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calls.sqlite3"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # It stopped waiting for the file (which stays locked until the script ends): well before
    # SQLite's 30 s busy timeout would have ended the wait, saying what is still on its way.
    waited = float(done.stdout.split("seconds after Ctrl-C:")[1].split()[0])
    assert waited < 20, done.stdout + done.stderr[-2000:]
    assert "still on their way to the cache file" in done.stderr
    finished = int(done.stdout.split("rows done:")[1].split()[0])
    assert 0 < finished < 200
    assert entries(path) >= 1 + finished  # the warm row and every row reported finished
