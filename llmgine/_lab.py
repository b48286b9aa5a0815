"""``llmgine lab``: JupyterLab on the quickstart notebook, stopped with this process.

The command opens JupyterLab on a notebook (the quickstart by default, found from
any folder of a clone) and passes SIGTERM and SIGHUP on to it, so stopping
``llmgine lab`` never leaves a JupyterLab server running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["QUICKSTART", "STOP_GRACE", "lab_command", "quickstart", "run_forwarding_signals"]

QUICKSTART = Path("notebooks") / "01_quickstart.ipynb"
STOP_GRACE = 30.0
"""Seconds JupyterLab gets to stop after a forwarded signal before it is killed."""


def quickstart() -> Path | None:
    """The quickstart notebook: under the current directory, else beside the package's clone."""
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (base / QUICKSTART).is_file():
            return (base / QUICKSTART).absolute()
    return None


def lab_command(notebook: str | None = None, jupyter_args: Sequence[str] = ()) -> list[str]:
    """The command that opens JupyterLab on ``notebook``, else on the quickstart if found.

    JupyterLab serves the current directory (or, for a notebook outside it, the
    notebook's folder; the clone for the quickstart), and its URL (printed, opened
    in the browser, and where ``/`` redirects) is ``/lab/tree/<the notebook>``.
    ``jupyter_args`` go to JupyterLab as they are.

    Raises:
        ConfigurationError: ``notebook`` does not exist.
    """
    from llmgine.errors import ConfigurationError

    command = [sys.executable, "-m", "jupyterlab"]
    target = Path(os.path.abspath(notebook)) if notebook else quickstart()
    if target is not None and target.is_dir():
        command.append(f"--ServerApp.root_dir={target}")
    elif target is not None:
        if not target.is_file():
            raise ConfigurationError(f"No notebook at {notebook}: give an .ipynb file's path.")
        here = Path.cwd()
        if target.is_relative_to(here):
            root = here
        else:
            root = target.parent.parent if notebook is None else target.parent
        path = quote(target.relative_to(root).as_posix())
        command += [f"--ServerApp.root_dir={root}", f"--LabApp.default_url=/lab/tree/{path}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers often run as root; Jupyter refuses otherwise
    return [*command, *jupyter_args]


def run_forwarding_signals(command: list[str]) -> int:
    """Run ``command``; pass SIGTERM and SIGHUP (and SIGINT without a terminal) on to it.

    The child is waited for (killed if it outlives :data:`STOP_GRACE` seconds after
    a forwarded signal), so stopping this process never leaves it running. At a
    terminal, Ctrl-C reaches the child itself (one process group): JupyterLab asks,
    then stops, and this process waits for it.

    Returns:
        ``128 + signal`` when a signal stopped it, else the child's exit code.
    """
    forwarded = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    if sys.stdin is None or not sys.stdin.isatty():
        forwarded.append(signal.SIGINT)
    received: list[int] = []
    child: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        if child and child[0].poll() is None:
            child[0].send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in forwarded}
    try:
        child.append(subprocess.Popen(command))
        if received:  # a signal before the child existed
            child[0].send_signal(received[0])
        code = _wait(child[0], received)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child and child[0].poll() is None:
            child[0].kill()
            child[0].wait()
    return 128 + received[0] if received else code


def _wait(child: subprocess.Popen[bytes], received: list[int]) -> int:
    deadline: float | None = None
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        except KeyboardInterrupt:
            continue  # Ctrl-C at the terminal: the child got it too and decides
        if received and deadline is None:
            deadline = time.monotonic() + STOP_GRACE
        if deadline is not None and time.monotonic() > deadline:
            name = signal.Signals(received[0]).name
            print(
                f"llmgine: JupyterLab did not stop within {STOP_GRACE:g} s of {name}; killed it",
                file=sys.stderr,
            )
            child.kill()
            return child.wait()
