"""Every Python block of the README runs as written (top-level await included)."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from llmgine.bus import MessageBus

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 3


async def test_the_readme_blocks_run_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As a reader pasting them into one notebook would run them."""
    shutil.copy(README, tmp_path / "README.md")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    buses: list[MessageBus] = []
    try:
        for index, block in enumerate(BLOCKS):
            flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
            code = compile(block, f"README block {index}", "exec", flags=flags)
            coroutine = eval(code, namespace)
            if coroutine is not None:
                await coroutine
            buses += [v for v in namespace.values() if isinstance(v, MessageBus)]
    finally:
        for bus in buses:
            await bus.stop()
    assert namespace["result"].success is True
    assert "[metric] files_processed=10" in capsys.readouterr().out
