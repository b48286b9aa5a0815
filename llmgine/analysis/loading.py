"""Load llmgine JSONL logs into a pandas DataFrame, one row per line, fast.

DuckDB's JSON reader does the parsing (in C++, on every core) and hands the rows
over as Arrow, so a million-line log loads in a couple of seconds. The payload
(``data``) and ``metadata`` stay JSON text: payloads of different events never
have to agree on types, and the frames in :mod:`llmgine.analysis.frames` parse
just the part they need.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from llmgine.errors import ConfigurationError

__all__ = ["ENVELOPE_COLUMNS", "LogReadWarning", "load_events"]

ENVELOPE_COLUMNS = [
    "kind",
    "type",
    "module",
    "id",
    "timestamp",
    "session_id",
    "trace_id",
    "span_id",
    "metadata",
    "data",
]

_READ_COLUMNS = (
    "{kind: 'VARCHAR', type: 'VARCHAR', module: 'VARCHAR', id: 'VARCHAR', "
    "timestamp: 'TIMESTAMPTZ', session_id: 'VARCHAR', trace_id: 'VARCHAR', "
    "span_id: 'VARCHAR', metadata: 'JSON', data: 'JSON'}"
)
_PROGRESS_BYTES = 64 * 2**20
_BATCH_ROWS = 100_000


class LogReadWarning(UserWarning):
    """Some lines of a log could not be read and were skipped."""


def _files(source: Any) -> list[Path]:
    from llmgine.bus.bus import MessageBus

    if isinstance(source, MessageBus):
        if source.log_path is None:
            raise ConfigurationError("This bus writes no log (log_dir=None): nothing to load.")
        source.flush()
        return [source.log_path] if source.log_path.exists() else []
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            # Oldest first: a directory of session logs reads in time order.
            return sorted(path.glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))
        if not path.exists():
            raise ConfigurationError(f"No log at {path}: give a .jsonl file, a directory or a bus.")
        return [path]
    if isinstance(source, Iterable):
        files = [Path(p) for p in source]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise ConfigurationError(f"No log file at: {', '.join(missing)}")
        return files
    raise TypeError(
        f"load_events takes a path, a directory, a list of paths or a MessageBus; "
        f"got {type(source).__name__}."
    )


def _timestamp(value: datetime | str | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def empty_events() -> pd.DataFrame:
    """An empty events frame with the envelope columns and their dtypes."""
    frame = pd.DataFrame({c: pd.Series(dtype="str") for c in ENVELOPE_COLUMNS})
    frame["timestamp"] = pd.Series(dtype="datetime64[us, UTC]")
    return frame


def load_events(
    source: Any,
    *,
    types: Iterable[str | type] | None = None,
    since: datetime | str | pd.Timestamp | None = None,
    until: datetime | str | pd.Timestamp | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Load llmgine JSONL logs: one row per line, with the envelope as columns.

    Columns: ``kind``, ``type``, ``module``, ``id``, ``timestamp`` (UTC datetime),
    ``session_id``, ``trace_id``, ``span_id``, ``metadata`` and ``data`` (both
    JSON text; :func:`~llmgine.analysis.events_frame` turns payloads into columns).
    Truncated or corrupt lines are skipped: their count is in
    ``df.attrs["skipped_lines"]`` and a :class:`LogReadWarning` says how many.

    Args:
        source: A ``.jsonl`` file, a directory (every ``*.jsonl`` in it, oldest
            first), a list of files, or a ``MessageBus`` (its log so far).
        types: Keep only these event/command types (names or classes).
        since: Keep lines at or after this time (naive times are UTC).
        until: Keep lines before this time.
        progress: Show a progress bar; ``None`` shows one for logs over 64 MB.

    Example:
        >>> df = load_events("logs/")  # doctest: +SKIP
        >>> df.llmgine.spans()  # doctest: +SKIP
    """
    files = _files(source)
    files = [f for f in files if f.stat().st_size > 0]
    if not files:
        frame = empty_events()
        frame.attrs.update(skipped_lines=0, sources=[])
        return frame
    keep = ["TRUE"]
    params: list[Any] = [[str(f) for f in files]]
    if types is not None:
        names = [t if isinstance(t, str) else t.__name__ for t in types]
        keep.append("list_contains($2, type)")
        params.append(names)
    if since is not None:
        params.append(_timestamp(since).to_pydatetime())
        keep.append(f"timestamp >= ${len(params)}")
    if until is not None:
        params.append(_timestamp(until).to_pydatetime())
        keep.append(f"timestamp < ${len(params)}")
    bad = "(kind IS NULL OR type IS NULL OR id IS NULL OR timestamp IS NULL)"
    sql = (
        f"SELECT *, {bad} AS _bad FROM read_json($1, format = 'newline_delimited', "
        f"ignore_errors = true, maximum_object_size = 268435456, columns = {_READ_COLUMNS}) "
        f"WHERE {bad} OR ({' AND '.join(keep)})"
    )
    size = sum(f.stat().st_size for f in files)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        with con.sql(sql, params=params).to_arrow_reader(batch_size=_BATCH_ROWS) as reader:
            table = _read_batches(reader, size, progress)
    frame = table.to_pandas()
    skipped = int(frame["_bad"].sum())
    if skipped:
        frame = frame.loc[~frame["_bad"]].reset_index(drop=True)
        where = ", ".join(str(f) for f in files)
        warnings.warn(
            f"{skipped} unreadable line(s) skipped in {where}", LogReadWarning, stacklevel=2
        )
    frame = frame.drop(columns="_bad")
    frame["timestamp"] = frame["timestamp"].dt.tz_convert("UTC")
    frame.attrs.update(skipped_lines=skipped, sources=[str(f) for f in files])
    return frame


def _read_batches(reader: pa.RecordBatchReader, size: int, progress: bool | None) -> pa.Table:
    show = size > _PROGRESS_BYTES if progress is None else progress
    if not show:
        return reader.read_all()
    from tqdm.auto import tqdm

    batches = []
    with tqdm(total=size, unit="B", unit_scale=True, desc="loading log") as bar:
        read = 0
        for batch in reader:
            batches.append(batch)
            # Bytes are estimated from the data column, the bulk of every line.
            step = min(size - read, batch.get_total_buffer_size())
            bar.update(step)
            read += step
        bar.update(size - read)
    return pa.Table.from_batches(batches, schema=reader.schema)
