"""Where the call cache's file lives: the user's cache folder, or ``LLMGINE_CACHE_DIR``."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from llmgine._paths import file_in_the_way
from llmgine._urls import redact_text, redact_url
from llmgine.errors import ConfigurationError

__all__ = [
    "CACHE_DIR_VARIABLE",
    "FILENAME",
    "cache_file",
    "default_cache_dir",
    "make_private_file",
]

CACHE_DIR_VARIABLE = "LLMGINE_CACHE_DIR"
"""The environment variable that moves the default cache folder."""
FILENAME = "calls.sqlite3"
"""The cache file's name in its folder."""
FOLDER_MODE = 0o700
"""The folders the cache makes: only their owner may list or enter them."""
FILE_MODE = 0o600
"""The cache file (every prompt and answer): only its owner may read it (SQLite gives
its ``-wal`` and ``-shm`` files the same mode)."""


def default_cache_dir() -> Path:
    """``$LLMGINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/llmgine``, else ``~/.cache/llmgine``."""
    moved = os.environ.get(CACHE_DIR_VARIABLE)
    if moved:
        return Path(moved).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "llmgine"


def cache_file(path: str | os.PathLike[str] | None = None) -> Path:
    """The SQLite file for ``path``: the default file, a folder's ``calls.sqlite3``, or the file.

    A path that ends with a separator (``"answers/"``) or names a folder that exists is a
    folder, made when first used; any other path is the file itself. A relative path is
    taken from the current folder now (a later ``%cd`` does not move the cache).

    Args:
        path: ``None`` (the default folder), a folder, or a file.

    Raises:
        ConfigurationError: ``path`` is a URL (``redis://...``): a cache is a file here,
            or the connected bus's Redis with ``cache="redis"``; or the file would be
            under a file (``"notes.txt/calls.sqlite3"``), where no folder can be made.
    """
    if path is None:
        chosen = default_cache_dir().absolute() / FILENAME
        _check_folders(chosen, f"the default folder, or ${CACHE_DIR_VARIABLE}")
        return chosen
    text = os.fsdecode(path)
    _refuse_url(text)
    chosen = Path(path).expanduser().absolute()
    if text.endswith(_SEPARATORS) or chosen.is_dir():
        chosen = chosen / FILENAME
    _check_folders(chosen, f"cache={redact_text(text)!r}")
    return chosen


_SEPARATORS = tuple(s for s in (os.sep, os.altsep, "/") if s)
"""A path ending with one of these names a folder."""


def _check_folders(file: Path, given: str) -> None:
    """Refuse a file that would be under a file: its folder could never be made."""
    blocking = file_in_the_way(file)
    if blocking is not None:
        raise ConfigurationError(
            f"The call cache's file {redact_text(str(file))} ({given}) is under "
            f"{redact_text(str(blocking))}, which is a file, not a folder: give a path in a "
            "folder, e.g. cache='answers/' for answers/calls.sqlite3 (or remove that file)."
        )


_URL = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.\-]*://")


def _refuse_url(path: str | bytes) -> None:
    """Refuse a URL taken for a path (it would become folders named after its password)."""
    text = path.decode(errors="replace") if isinstance(path, bytes) else path
    if _URL.match(text) is None:
        return
    raise ConfigurationError(
        f"The call cache is a file, not a URL ({redact_url(text.strip())}). For the shared "
        "bus's Redis use cache='redis' on a bus connected with `await bus.connect(url)`; "
        "for a file give its path (cache='calls.sqlite3'), or cache=True for the default file."
    )


def make_private_file(file: Path) -> None:
    """Make ``file`` (mode 0600) and the folders missing above it (0700), if missing.

    The cache holds every prompt and answer, so nobody but its owner may read it. Folders
    that exist already (the user's) keep their mode, and so does a file that exists.
    """
    missing = []
    folder = file.parent
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            folder.mkdir(mode=FOLDER_MODE)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
