"""What a log source is: files, a directory, a bus; and what a time filter is.

Every analysis entry point (``load_events``, the frames, ``query``) resolves its
source and its ``since``/``until`` here, so a wrong source or a wrong time is one
clear :class:`~llmgine.errors.LogSourceError`, never a DuckDB or pandas traceback.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from llmgine.errors import LogSourceError

__all__ = ["LogReadWarning", "TimeLike", "log_files", "parse_time", "type_names"]

TimeLike = datetime | date | str | pd.Timestamp
"""What ``since``/``until`` accept: a datetime, a date, an ISO 8601 string or a Timestamp."""


class LogReadWarning(UserWarning):
    """Some lines (or entries of a directory) of a log could not be read and were skipped."""


_WHAT = "a path to a .jsonl file or a directory of them, a list of files, or a MessageBus"


def _directory(path: Path) -> list[Path]:
    found: list[tuple[float, str, Path]] = []
    broken: list[str] = []
    for entry in path.glob("*.jsonl"):
        try:
            if not entry.is_file():  # a subdirectory named x.jsonl, a socket, a dangling link
                if entry.is_symlink() and not entry.exists():
                    broken.append(entry.name)
                continue
            found.append((entry.stat().st_mtime, entry.name, entry))
        except OSError:  # removed or unreadable between listing and stat
            broken.append(entry.name)
    if broken:
        warnings.warn(
            f"skipped {len(broken)} entr{'y' if len(broken) == 1 else 'ies'} of {path} that "
            f"cannot be read as a file: {', '.join(sorted(broken))}",
            LogReadWarning,
            stacklevel=4,
        )
    # Oldest first: a directory of session logs reads in time order.
    return [entry for _, _, entry in sorted(found)]


def _path(value: Any) -> Path:
    if isinstance(value, str | os.PathLike) and not isinstance(value, bytes):
        text = os.fspath(value)
        if isinstance(text, str) and text and "\x00" not in text:
            return Path(text)
    raise LogSourceError(f"{value!r} is not a log path; give {_WHAT}.")


def _holds_no_log(path: Path) -> str:
    """Why a directory gave no log file, and what to give instead."""
    inside = sorted(d.name for d in path.iterdir() if d.is_dir() and any(d.glob("*.jsonl")))
    if inside:
        return (
            f"{path} holds no log: no .jsonl file in it, and its folders are not read; "
            f"give one of them: {', '.join(str(path / name) for name in inside[:5])}"
        )
    return f"{path} holds no log: no .jsonl file in it; give a .jsonl log or a directory of them."


def _one(path: Path) -> list[Path]:
    if path.is_dir():
        files = _directory(path)
        if not files:
            raise LogSourceError(_holds_no_log(path))
        return files
    if path.is_file():
        return [path]
    if path.is_symlink():
        raise LogSourceError(f"{path} is a broken symbolic link (to {os.readlink(path)}).")
    if path.exists():
        raise LogSourceError(f"{path} is not a regular file; give {_WHAT}.")
    raise LogSourceError(f"No log at {path}: give a .jsonl file or a directory of them")


def log_files(source: Any) -> list[Path]:
    """The files of a log source, oldest first for a directory.

    Args:
        source: A ``.jsonl`` file, a directory (its ``*.jsonl`` files; entries that
            are not readable files are skipped with a :class:`LogReadWarning`), a
            list of files or directories (a file given twice is read once), or a
            ``MessageBus`` (flushed first).

    Raises:
        LogSourceError: The source is missing, not a path, a directory holding no
            ``.jsonl`` file (the message names its folders that hold some), or a bus
            without a log.
    """
    from llmgine.bus.bus import MessageBus

    if isinstance(source, MessageBus):
        if source.log_path is None:
            raise LogSourceError("This bus writes no log (log_dir=None): nothing to load.")
        source.flush()
        return [source.log_path] if source.log_path.exists() else []
    if isinstance(source, str | os.PathLike):
        return _one(_path(source))
    if isinstance(source, pd.DataFrame):
        raise LogSourceError(
            "This is already a DataFrame: pass it to the frames (spans_frame(df), ...), "
            "or give load_events the log's path."
        )
    if isinstance(source, Iterable) and not isinstance(source, bytes | bytearray | dict):
        paths = [_path(item) for item in source]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise LogSourceError(f"No log file at: {', '.join(missing)}")
        return _once([file for path in paths for file in _one(path)])
    raise LogSourceError(f"load_events takes {_WHAT}; got {type(source).__name__}.")


def _once(files: list[Path]) -> list[Path]:
    """``files`` without a second mention of one file (by its resolved path), in order."""
    seen: set[Path] = set()
    out: list[Path] = []
    for file in files:
        real = file.resolve()
        if real not in seen:
            seen.add(real)
            out.append(file)
    return out


def parse_time(value: TimeLike, name: str) -> pd.Timestamp:
    """``value`` as a UTC Timestamp (naive times are UTC).

    Raises:
        LogSourceError: ``value`` is not a time; the message names the argument.
    """
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise LogSourceError(
            f"{name}={value!r} is not a time: give a datetime or an ISO 8601 string "
            f"such as '2026-11-24T15:00:00Z' ({exc})."
        ) from None
    if pd.isna(stamp):
        raise LogSourceError(f"{name}={value!r} is not a time: give a datetime or an ISO string.")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def type_names(types: Iterable[str | type] | str | type) -> list[str]:
    """Type filter values as names: a class is its ``__name__``; one name is a list of one."""
    if isinstance(types, str | type):
        types = [types]
    names: list[str] = []
    for item in types:
        if isinstance(item, type):
            names.append(item.__name__)
        elif isinstance(item, str):
            names.append(item)
        else:
            raise LogSourceError(f"types holds {item!r}; give type names or classes.")
    return names
