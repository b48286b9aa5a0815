"""Installed without extras (``pip install llmgine``), llmgine imports and its core works.

The dev extra brings in a great deal (jupyterlab, llama.cpp, MCP, Redis, OpenTelemetry),
and with it packages llmgine never declared: an ``import httpx`` in the openai provider
worked here for months and failed for every user who installed llmgine alone. This test
builds a fresh venv, installs the project as a user would (plus only pytest and its
asyncio and timeout plugins), and in it imports every module that no extra guards and
runs the core tests. pip's cache is warm from the main install: it takes about a minute
and a half on two cores, most of it pip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BEHIND_EXTRAS: dict[str, tuple[str, ...]] = {
    # module (and its submodules) -> the top-level modules its extra brings
    "llmgine.bus.remote": ("redis",),
    "llmgine.llm.mcp": ("mcp", "jsonschema"),
    "llmgine.observability.otlp": ("opentelemetry",),
}
"""Modules that may need an extra; any other module must import with the core alone."""

CORE_TESTS = [
    "tests/messages",
    "tests/bus/test_commands.py",
    "tests/bus/test_events.py",
    "tests/bus/test_handler_failures.py",
    "tests/bus/test_lifecycle.py",
    "tests/bus/test_sessions.py",
    "tests/observability/test_codec.py",
    "tests/observability/test_jsonl.py",
    "tests/observability/test_spans.py",
    "tests/analysis",
    "tests/llm/test_engine.py",
    "tests/llm/test_offline.py",
    "tests/llm/test_tools.py",
    "tests/llm/test_openai.py",
    "tests/llm/test_openai_errors.py",
]
"""Tests that need no extra; the openai ones reach a fake server that refuses or fails."""

IMPORT_EVERY_MODULE = textwrap.dedent(
    """
    import importlib, json, sys
    from pathlib import Path

    import llmgine

    behind = json.loads(sys.argv[1])
    package = Path(llmgine.__file__).parent
    problems = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        guard = next((p for p in behind if name == p or name.startswith(p + ".")), None)
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").partition(".")[0]
            if guard is None or missing not in behind[guard]:
                problems.append(f"{name}: ModuleNotFoundError: {exc}")
        except BaseException as exc:
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
    print(json.dumps({"file": llmgine.__file__, "problems": problems}))
    """
)


def _run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.timeout(1200)
def test_the_core_imports_and_passes_its_tests_installed_without_extras(tmp_path: Path) -> None:
    began = time.monotonic()
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], tmp_path, 120)
    assert made.returncode == 0, made.stderr
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check"]
    core = ["pytest", "pytest-asyncio", "pytest-timeout"]
    installed = _run([*pip, str(ROOT), *core], tmp_path, 900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    installed_at = time.monotonic() - began

    # (a) Every module that no extra guards imports with the core dependencies alone.
    imported = _run([python, "-c", IMPORT_EVERY_MODULE, json.dumps(BEHIND_EXTRAS)], tmp_path, 300)
    assert imported.returncode == 0, imported.stderr[-3000:]
    report = json.loads(imported.stdout.strip().splitlines()[-1])
    assert report["file"].startswith(str(venv)), report["file"]  # the install, not the clone
    assert report["problems"] == [], "\n".join(report["problems"])

    # (b) The core tests pass there (run from outside the clone: they import the install).
    tests = [str(ROOT / t) for t in CORE_TESTS]
    ran = _run(
        [
            python,
            "-m",
            "pytest",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(ROOT),
            "-o",
            "addopts=",  # no --nbval: nbval is a dev tool, not installed here
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            "-q",
            "-x",
            *tests,
        ],
        tmp_path,
        900,
    )
    summary = ran.stdout.strip().splitlines()[-1] if ran.stdout.strip() else ""
    assert ran.returncode == 0, ran.stdout[-6000:] + ran.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary
    print(
        f"no-extras venv: install {installed_at:.0f} s, "
        f"whole check {time.monotonic() - began:.0f} s ({summary})"
    )
