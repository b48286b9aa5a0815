"""``query(source, sql)``: DuckDB SQL straight over llmgine JSONL logs."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from llmgine.analysis.json_columns import query as run_query
from llmgine.analysis.sources import TimeLike
from llmgine.analysis.spans import create_spans_table
from llmgine.analysis.views import open_log
from llmgine.errors import LLMgineError, QueryError

__all__ = ["VIEW_NAMES", "QueryError", "query"]

VIEW_NAMES = ("events", "spans", "metrics", "commands", "llm_calls", "traces")
"""The views ``query()`` offers; each has the columns of the frame of the same name."""


_SQL_ERRORS = (
    duckdb.ProgrammingError,  # parser, binder, catalog, invalid input
    duckdb.DataError,  # conversion, out of range, type mismatch
    duckdb.NotSupportedError,
    duckdb.IntegrityError,
    duckdb.DependencyException,
    duckdb.PermissionException,
)


def query(
    source: Any,
    sql: str,
    *,
    types: Iterable[str | type] | str | type | None = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    memory_limit: str | None = None,
) -> pd.DataFrame:
    """Run DuckDB SQL over a log without loading it into pandas; return the result.

    The log is seen through views with the columns of the frames of the same name:
    ``events`` (:func:`load_events`), ``spans`` (:func:`spans_frame`, a column per
    attribute), ``metrics``, ``commands``, ``llm_calls`` and ``traces``. DuckDB
    streams the JSONL files, so only the result is ever held in memory.

    Args:
        source: A ``.jsonl`` file, a directory of them, a list of files, a
            ``MessageBus``, or a frame from ``load_events``.
        sql: One SELECT over the views, e.g.
            ``"SELECT model, sum(total_tokens) FROM llm_calls GROUP BY model"``.
        types: Keep only lines of these types (names or classes) in every view.
        since: Keep lines at or after this time (naive times are UTC).
        until: Keep lines before this time.
        memory_limit: Cap DuckDB's memory, e.g. ``"1GB"`` (it spills to disk beyond).

    Raises:
        LogSourceError: The source cannot be read or a filter is not a time.
        QueryError: The SQL does not parse, names a column or table that is not
            there, or fails on the data (a cast, an overflow, an invalid argument);
            the message is DuckDB's first line and the views' names.

    Example:
        >>> sql = "SELECT command_type, count(*) FROM commands GROUP BY 1"
        >>> query("logs/", sql)  # doctest: +SKIP
    """
    if not isinstance(sql, str) or not sql.strip():
        raise QueryError("query() needs SQL text, e.g. 'SELECT count(*) FROM events'.")
    with open_log(source, types=types, since=since, until=until, memory_limit=memory_limit) as log:
        try:
            if "spans" in _tables(sql):
                create_spans_table(log.con)
            return run_query(log.con, sql)
        except _SQL_ERRORS as exc:
            raise QueryError(f"{_first_line(exc)} (views: {', '.join(VIEW_NAMES)})") from None
        except duckdb.OutOfMemoryException as exc:
            raise QueryError(
                f"{_first_line(exc)}: give query() a larger memory_limit=, or select less"
            ) from None
        except duckdb.IOException as exc:
            if any(Path(name).name in str(exc) for name in log.sources):
                raise  # the log itself: read_errors names it
            raise QueryError(f"{_first_line(exc)} (a file the SQL names)") from None
        except LLMgineError:
            raise
        except ValueError as exc:  # not a statement that returns rows
            raise QueryError(str(exc)) from None


def _tables(sql: str) -> set[str]:
    try:
        return {name.lower() for name in duckdb.get_table_names(sql)}
    except duckdb.Error:
        return set()  # the query itself will fail with DuckDB's message


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
