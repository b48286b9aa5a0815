"""``llmgine lab`` with a real JupyterLab on 127.0.0.1: the quickstart opens, SIGTERM stops it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmgine._processes import free_port

QUICKSTART_URL = "/lab/tree/notebooks/01_quickstart.ipynb"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def server_info(
    runtime: Path, process: subprocess.Popen[bytes], timeout: float
) -> dict[str, object]:
    """The ``jpserver-PID.json`` JupyterLab writes once it serves (waited for, bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "llmgine lab exited before JupyterLab served"
        for path in runtime.glob("jpserver-*.json"):
            try:
                info: dict[str, object] = json.loads(path.read_text())
            except ValueError:  # being written
                continue
            return info
        time.sleep(0.2)  # a file another process writes: nothing to wait on but the disk
    raise AssertionError(f"JupyterLab did not start within {timeout} s")


def get(port: int, path: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


@pytest.mark.timeout(240)
def test_lab_opens_the_quickstart_and_sigterm_leaves_no_jupyterlab(tmp_path: Path) -> None:
    pytest.importorskip("jupyterlab")  # the lab extra; the dev extra has it
    port, token = free_port(), "t0ken-for-the-test"
    runtime = tmp_path / "runtime"
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
    }
    command = [sys.executable, "-m", "llmgine", "lab", "--no-browser", "--port", str(port)]
    command += ["--ip", "127.0.0.1", "--", f"--ServerApp.token={token}"]
    lab = subprocess.Popen(  # from elsewhere: the quickstart is found beside the package
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    jupyter_pid = None
    try:
        info = server_info(runtime, lab, timeout=180)
        jupyter_pid = int(str(info["pid"]))
        assert info["port"] == port  # --port reached JupyterLab
        home = get(port, f"/?token={token}")
        assert home.status == 302
        assert home.getheader("Location", "").split("?")[0].endswith(QUICKSTART_URL)
        assert get(port, f"{QUICKSTART_URL}?token={token}").status == 200
        opened = (runtime / f"jpserver-{jupyter_pid}-open.html").read_text()
        assert f"http://127.0.0.1:{port}{QUICKSTART_URL}?token=" in opened  # what a browser opens
        lab.send_signal(signal.SIGTERM)
        assert lab.wait(timeout=90) == 128 + signal.SIGTERM
        assert not alive(jupyter_pid)  # forwarded, and waited for
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait(timeout=30)
        if jupyter_pid is not None and alive(jupyter_pid):
            os.kill(jupyter_pid, signal.SIGKILL)
