"""Local server processes (Redis, llama.cpp, and the tests' own): a free port, a clean stop."""

from __future__ import annotations

import signal
import socket
import subprocess
from typing import Any

__all__ = ["free_port", "stop_process"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stop_process(
    process: subprocess.Popen[Any], *, kill: bool = False, timeout: float = 15
) -> None:
    """Stop ``process`` by its pid and wait for it: SIGTERM (SIGKILL with ``kill``).

    One that outlives ``timeout`` seconds is killed. One that exited already is fine.
    """
    try:
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass  # it had exited already
