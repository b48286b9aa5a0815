"""Fixtures of the LLM tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


def _children() -> set[int]:
    """Pids of this process's live children (from /proc), zombies left out."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            pids.add(int(entry.name))
    return pids


@pytest.fixture
def child_pids() -> Callable[[], set[int]]:
    """A function giving the pids of this process's live children (a server it started)."""
    return _children
