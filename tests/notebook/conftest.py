"""A fresh IPython shell per test, with llmgine loaded, in a temporary directory."""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from llmgine.notebook import get_runtime, run_sync


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / ".ipython"))
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.extension_manager.load_extension("llmgine")
    ip.run_cell(
        "from llmgine import Command, Event\n"
        "class PingCommand(Command):\n"
        "    n: int = 1\n"
        "class PingedEvent(Event):\n"
        "    n: int = 0\n"
        "pongs = []\n"
        "def on_ping(cmd):\n"
        "    return cmd.n * 10\n"
        "def on_pinged(event):\n"
        "    pongs.append(event.n)\n"
        "def get_weather(city: str) -> str:\n"
        '    """Get the weather.\n\n    Args:\n        city: The city.\n    """\n'
        "    return f'Sunny in {city}'\n"
    )
    yield ip
    runtime = get_runtime()
    if runtime.bus is not None:
        run_sync(runtime.bus.stop())
    # IPython registers every shell's exit work (a full garbage collection each): left
    # registered, each test's shell lives to the end and the run's exit takes a minute.
    atexit.unregister(ip.atexit_operations)
    InteractiveShell.clear_instance()
