"""The Binder configuration, checked without Docker.

repo2docker writes the Dockerfile it would build; a fresh virtual environment made from
binder/requirements.txt alone imports llmgine and runs the quickstart notebook in its own kernel.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def test_repo2docker_builds_from_binder_requirements_with_the_pinned_python() -> None:
    repo2docker = shutil.which("repo2docker") or str(Path(sys.executable).parent / "repo2docker")
    out = subprocess.run(
        [repo2docker, "--no-build", "--debug", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    dockerfile = out.stdout + out.stderr
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    assert runtime == "python-3.11"
    assert "python=3.11" in dockerfile
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in dockerfile
    assert "binder/requirements.txt" in dockerfile.split("COPY", 1)[1]


@pytest.fixture(scope="module")
def binder_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("binder") / "venv"
    venv.EnvBuilder(with_pip=True).create(where)
    python = where / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"],
        cwd=ROOT,  # as repo2docker does: "." is the repository
        check=True,
        timeout=1200,
    )
    return python


def test_a_fresh_environment_from_binder_requirements_imports_llmgine(binder_env: Path) -> None:
    out = subprocess.run(
        [str(binder_env), "-c", "import llmgine, ipywidgets, pandas; print(llmgine.__file__)"],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    assert "site-packages" in out.stdout  # the installed package, not this checkout


def test_the_quickstart_runs_in_the_binder_environment(
    binder_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernels = tmp_path / "jupyter" / "kernels" / "binder-env"
    kernels.mkdir(parents=True)
    spec = {
        "argv": [str(binder_env), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "binder env",
        "language": "python",
    }
    (kernels / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    nb = nbformat.read(ROOT / "notebooks" / "01_quickstart.ipynb", as_version=4)
    expected = {i: c.outputs for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    NotebookClient(
        nb, timeout=120, kernel_name="binder-env", resources={"metadata": {"path": str(workdir)}}
    ).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    results = {
        i: c.outputs[-1].data["text/plain"]
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and c.outputs and "data" in c.outputs[-1]
    }
    saved = {i: o[-1].data["text/plain"] for i, o in expected.items() if o and "data" in o[-1]}
    assert results[8] == saved[8] == "(True, 6, [6])"
    assert results[10] == saved[10] == "(3, [6, 3])"
    assert len(list((workdir / "logs").glob("events_*.jsonl"))) == 1


def test_the_local_model_answers_in_the_binder_environment(binder_env: Path) -> None:
    """Binder installs the `local` extra: a real model answers there with no key."""
    script = (
        "import asyncio\n"
        "from llmgine import LLMEngine, MessageBus\n"
        "async def main():\n"
        "    async with MessageBus(log_dir=None, enable_console_metrics=False,\n"
        "                          enable_console_traces=False) as bus:\n"
        "        engine = LLMEngine(bus, model='local')\n"
        "        print(engine.provider.name, bool(await engine.chat('Say hi.', max_tokens=4)))\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [str(binder_env), "-c", script],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert out.stdout.strip() == "local True"
