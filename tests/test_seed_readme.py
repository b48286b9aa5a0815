"""The original README's snippet runs exactly as written: every name in it is a promise."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

SEED = Path(__file__).resolve().parents[1].parent / "shared" / "SEED-README.md"

# The commented-out lines of the custom-span example, which must work when uncommented.
SPAN_LINES = ("trace_id =", "span_id =", "span_context =", "await message_bus.publish(TraceEvent")


def seed_snippet() -> str:
    if not SEED.exists():
        pytest.fail(f"{SEED} is missing: the seed README must sit in ../shared beside the repo.")
    blocks = re.findall(r"```python\n(.*?)```", SEED.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, "the seed README has no python snippet"
    return str(blocks[0])


async def run(source: str, namespace: dict[str, Any]) -> None:
    code = compile(source, str(SEED), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    coroutine = eval(code, namespace)
    if coroutine is not None:
        await coroutine


async def test_the_seed_snippet_runs_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    await run(seed_snippet(), namespace)
    bus = namespace["message_bus"]
    assert bus.is_running
    await bus.stop()
    lines = [
        json.loads(x) for x in (tmp_path / "logs" / "app_events.jsonl").read_text().splitlines()
    ]
    assert [line["type"] for line in lines] == ["MetricEvent"]
    assert lines[0]["data"]["metrics"][0] == {
        "name": "files_processed",
        "value": 10,
        "unit": None,
        "tags": {},
    }
    assert "[metric] files_processed=10" in capsys.readouterr().out


async def test_the_seed_custom_span_lines_work_uncommented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    source = seed_snippet()
    uncommented = [
        line.removeprefix("# ") if line.removeprefix("# ").startswith(SPAN_LINES) else line
        for line in source.splitlines()
    ]
    assert sum(a != b for a, b in zip(uncommented, source.splitlines(), strict=True)) == 5
    namespace: dict[str, Any] = {}
    exec("from datetime import datetime", namespace)
    await run("\n".join(uncommented), namespace)
    await namespace["message_bus"].stop()
    lines = [
        json.loads(x) for x in (tmp_path / "logs" / "app_events.jsonl").read_text().splitlines()
    ]
    spans = [line["data"] for line in lines if line["type"] == "TraceEvent"]
    assert [s["name"] for s in spans] == ["Custom Operation Start", "Custom Operation End"]
    assert spans[1]["status"] == "OK"
    assert {s["span_context"]["trace_id"] for s in spans} == {"custom_trace_1"}
    assert "[span] Custom Operation End OK" in capsys.readouterr().out
