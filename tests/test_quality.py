"""Static checks as tests, so the README's test command covers them: ruff and mypy --strict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_finds_nothing() -> None:
    out = run("ruff", "check", "llmgine", "tests", "benchmarks", "examples", "notebooks")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_is_clean() -> None:
    sources = ["llmgine", "tests", "benchmarks", "examples", "notebooks/build.py"]
    out = run("ruff", "format", "--check", *sources)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_passes_on_the_package() -> None:
    out = run("mypy")
    assert out.returncode == 0, out.stdout + out.stderr
