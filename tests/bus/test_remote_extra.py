"""Without the redis extra, importing the shared bus's package says which extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.timeout(60)
def test_importing_the_remote_bus_without_redis_names_the_extra() -> None:
    script = (
        "import sys\n"
        "sys.modules['redis'] = None  # as if the redis package were not installed\n"
        "try:\n"
        "    from llmgine.bus.remote import RedisServer\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(type(exc).__name__, exc.name, '|', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50, check=True
    ).stdout
    assert out.startswith("ModuleNotFoundError redis |"), out
    assert "pip install 'llmgine[redis]'" in out
