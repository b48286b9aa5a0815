"""Fixtures of the batch tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``map`` sends ``cache=True``: its default cache file is written here, never to the
    user's cache folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("LLMGINE_CACHE_DIR", str(folder))
    return folder
