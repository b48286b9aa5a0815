"""Load llmgine JSONL logs into a pandas DataFrame, one row per line, fast.

DuckDB's JSON reader does the parsing (in C++, on every core) and hands the rows
over as Arrow, so a million-line log loads in a couple of seconds. The payload
(``data``) and ``metadata`` stay JSON text: payloads of different events never
have to agree on types, and the frames in :mod:`llmgine.analysis.frames` parse
just the part they need.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from llmgine.analysis.sources import LogReadWarning, TimeLike, log_files
from llmgine.analysis.views import (
    BAD_LINE,
    ENVELOPE_COLUMNS,
    add_checks,
    files_sql,
    keep_sql,
    read_errors,
)

__all__ = ["ENVELOPE_COLUMNS", "LogReadWarning", "load_events"]

_PROGRESS_BYTES = 64 * 2**20
_BATCH_ROWS = 100_000


def empty_events() -> pd.DataFrame:
    """An empty events frame with the envelope columns and their dtypes."""
    frame = pd.DataFrame({c: pd.Series(dtype="str") for c in ENVELOPE_COLUMNS})
    frame["timestamp"] = pd.Series(dtype="datetime64[us, UTC]")
    return frame


def load_events(
    source: Any,
    *,
    types: Iterable[str | type] | None = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Load llmgine JSONL logs: one row per line, with the envelope as columns.

    Columns: ``kind``, ``type``, ``module``, ``id``, ``timestamp`` (UTC datetime),
    ``session_id``, ``trace_id``, ``span_id``, ``metadata`` and ``data`` (both
    JSON text; :func:`~llmgine.analysis.events_frame` turns payloads into columns).
    Truncated or corrupt lines are skipped: their count is in
    ``df.attrs["skipped_lines"]`` and a :class:`LogReadWarning` says how many, in
    which files. A message read twice (a copy of a log in the same folder, a file
    listed twice) is one row, as in every frame and view.

    Args:
        source: A ``.jsonl`` file, a directory (every ``*.jsonl`` file in it, oldest
            first; its subfolders are not read), a list of files, or a
            ``MessageBus`` (its log so far).
        types: Keep only these event/command types (names or classes).
        since: Keep lines at or after this time (naive times are UTC).
        until: Keep lines before this time.
        progress: Show a progress bar; ``None`` shows one for logs over 64 MB.

    Raises:
        LogSourceError: The source cannot be read, is a directory holding no
            ``.jsonl`` file, or a filter is not a time; the message says which and
            what to give instead.

    Example:
        >>> df = load_events("logs/")  # doctest: +SKIP
        >>> df.llmgine.spans()  # doctest: +SKIP
    """
    keep = keep_sql(types, since, until)  # a bad filter fails before any file is read
    files = [f for f in log_files(source) if f.stat().st_size > 0]
    if not files:
        frame = empty_events()
        frame.attrs.update(skipped_lines=0, sources=[])
        return frame
    sql = f"SELECT *, {BAD_LINE} AS _bad FROM {files_sql(files)} WHERE {BAD_LINE} OR ({keep})"
    if len(files) > 1:  # which file a bad line is in, for the warning
        sql = (
            f"SELECT * EXCLUDE (filename), CASE WHEN {BAD_LINE} THEN filename END AS _file, "
            f"{BAD_LINE} AS _bad FROM {files_sql(files, filename=True)} "
            f"WHERE {BAD_LINE} OR ({keep})"
        )
    size = sum(f.stat().st_size for f in files)
    with duckdb.connect() as con, read_errors([str(f) for f in files]):
        con.execute("SET TimeZone = 'UTC'")
        add_checks(con)
        with con.sql(sql).to_arrow_reader(batch_size=_BATCH_ROWS) as reader:
            table = _read_batches(reader, size, progress)
    frame = table.to_pandas()
    if len(files) > 1:
        # The same message in two files (a copy beside the log) is one row, the first read;
        # the views of open_log drop it the same way (views.once_sql).
        again = frame["id"].where(~frame["_bad"]).duplicated() & ~frame["_bad"]
        if again.any():
            frame = frame.loc[~again].reset_index(drop=True)
    skipped = int(frame["_bad"].sum())
    if skipped:
        if "_file" in frame.columns:
            per_file = frame.loc[frame["_bad"], "_file"].value_counts(sort=False)
        else:
            per_file = pd.Series({str(files[0]): skipped})
        frame = frame.loc[~frame["_bad"]].reset_index(drop=True)
        warnings.warn(_skipped_text(skipped, per_file, files), LogReadWarning, stacklevel=2)
    frame = frame.drop(columns=["_bad", "_file"], errors="ignore")
    frame["timestamp"] = frame["timestamp"].dt.tz_convert("UTC")
    frame.attrs.update(skipped_lines=skipped, sources=[str(f) for f in files])
    return frame


def _skipped_text(skipped: int, per_file: pd.Series, files: list[Path]) -> str:
    """``3 unreadable line(s) skipped: 1 in a.jsonl, 2 in b.jsonl``, naming only those files."""
    counts = {str(name): int(n) for name, n in per_file.items()}
    named = [(str(f), counts.pop(str(f), 0)) for f in files]
    named += list(counts.items())  # a name DuckDB spells otherwise
    found = [(name, n) for name, n in named if n]
    if len(found) == 1:
        return f"{skipped} unreadable line(s) skipped in {found[0][0]}"
    where = ", ".join(f"{n} in {name}" for name, n in found)
    return f"{skipped} unreadable line(s) skipped: {where}"


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
