"""Where a SQLite conversation store's file is: made absolute once, checked before any use."""

from __future__ import annotations

from pathlib import Path

from llmgine._paths import file_in_the_way
from llmgine._urls import redact_text
from llmgine.errors import ConfigurationError

__all__ = ["database_path"]


def database_path(path: str | Path) -> Path:
    """``path`` made absolute (from the current folder, now), checked that a file can be there.

    Raises:
        ConfigurationError: ``path`` is empty, is a folder, or is under a file.
    """
    if not str(path).strip():
        raise ConfigurationError(
            "The conversation store's path is empty ('sqlite:///' names no file): give a "
            "file, e.g. conversations='sqlite:///chats.db' (in the current folder) or "
            "'sqlite:////home/me/chats.db' (four slashes for an absolute path)."
        )
    absolute = Path(path).expanduser().absolute()
    shown = redact_text(str(absolute))
    if absolute.is_dir():
        raise ConfigurationError(
            f"The conversation store's path {shown} is a folder: give a file in it, "
            f"e.g. 'sqlite:///{shown}/chats.db'."
        )
    blocking = file_in_the_way(absolute)
    if blocking is not None:
        raise ConfigurationError(
            f"The conversation store's path {shown} is under {redact_text(str(blocking))}, "
            "which is a file, not a folder: give a path in a folder (or remove that file)."
        )
    return absolute
