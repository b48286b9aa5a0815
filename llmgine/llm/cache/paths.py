"""Where the call cache's file lives: the user's cache folder, or ``LLMGINE_CACHE_DIR``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_DIR_VARIABLE", "FILENAME", "cache_file", "default_cache_dir"]

CACHE_DIR_VARIABLE = "LLMGINE_CACHE_DIR"
"""The environment variable that moves the default cache folder."""
FILENAME = "calls.sqlite3"
"""The cache file's name in its folder."""


def default_cache_dir() -> Path:
    """``$LLMGINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/llmgine``, else ``~/.cache/llmgine``."""
    moved = os.environ.get(CACHE_DIR_VARIABLE)
    if moved:
        return Path(moved).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "llmgine"


def cache_file(path: str | os.PathLike[str] | None = None) -> Path:
    """The SQLite file for ``path``: the default file, a folder's ``calls.sqlite3``, or the file.

    Args:
        path: ``None`` (the default folder), a folder that exists, or a file.
    """
    if path is None:
        return default_cache_dir() / FILENAME
    chosen = Path(path).expanduser()
    return chosen / FILENAME if chosen.is_dir() else chosen
