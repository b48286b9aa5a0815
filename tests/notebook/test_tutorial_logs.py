"""Tutorials that log to a fixed file start each run from a fresh log (no rows of the last run)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from llmgine import Metric, MetricEvent
from llmgine.testing import FakeOpenAIServer

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
FIXED_LOG = re.compile(r"MessageBus\(\s*log_dir=\"logs\",\s*log_filename=\"([^\"]+)\"")


def _cells_with_a_fixed_log() -> list[tuple[str, str, str]]:
    found = []
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            source = "".join(cell["source"])
            match = FIXED_LOG.search(source)
            if cell["cell_type"] == "code" and match and "async with" not in source:
                found.append((notebook.name, source, match.group(1)))
    return found


CELLS = _cells_with_a_fixed_log()


def test_the_tutorials_with_a_fixed_log_are_found() -> None:
    names = {notebook[:2] for notebook, _, _ in CELLS}
    assert {"06", "07"} <= names


async def _run(source: str, namespace: dict[str, Any]) -> None:
    code = compile(source, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if result is not None:
        await result


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("notebook", "source", "log_name"), CELLS, ids=[c[0] for c in CELLS])
async def test_a_second_run_does_not_append_to_the_first_runs_log(
    notebook: str,
    source: str,
    log_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # the tutorials run with notebooks/ as their directory
    log = tmp_path / "logs" / log_name
    with FakeOpenAIServer() as server:  # stands in for the tutorial's llama.cpp server
        first: dict[str, Any] = {"server": server}
        await _run(source, first)
        await first["bus"].publish(MetricEvent(metrics=[Metric(name="run", value=1)]))
        await first["bus"].stop()
        assert "run" in log.read_text()
        second: dict[str, Any] = {"server": server}
        await _run(source, second)  # the notebook run again, in a new kernel
        await second["bus"].stop()
    left = log.read_text() if log.exists() else ""
    assert '"run"' not in left, f"{notebook} kept the last run's lines in {log_name}"
