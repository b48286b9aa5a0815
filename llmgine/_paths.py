"""Where a file cannot go: the one check behind the cache's and the conversation store's paths."""

from __future__ import annotations

from pathlib import Path

__all__ = ["file_in_the_way"]


def file_in_the_way(path: Path) -> Path | None:
    """The file among ``path``'s folders, if one is (then no folder can ever be made there).

    Only the nearest folder that exists is looked at: what is above it is a folder.
    """
    for folder in path.expanduser().absolute().parents:
        if folder.exists():
            return None if folder.is_dir() else folder
    return None
