"""Spans and traces from a log, in the column shape of Arize Phoenix."""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

from llmgine.analysis.json_columns import create_flat_table, flatten_json, query
from llmgine.analysis.sources import TimeLike
from llmgine.analysis.views import open_log

__all__ = ["SPAN_COLUMNS", "create_spans_table", "spans_frame", "traces_frame"]

SPAN_COLUMNS = [
    "context.trace_id",
    "parent_id",
    "name",
    "span_kind",
    "start_time",
    "end_time",
    "status_code",
    "status_message",
    "duration_ms",
]
_ORDER = '_first, "context.span_id"'


def spans_frame(
    source: Any, *, since: TimeLike | None = None, until: TimeLike | None = None
) -> pd.DataFrame:
    """One row per span, indexed by ``context.span_id``, with Phoenix-style columns.

    Columns: ``context.trace_id``, ``parent_id``, ``name``, ``span_kind``,
    ``start_time``, ``end_time``, ``status_code`` (``OK``/``ERROR``/``UNSET``),
    ``status_message``, ``duration_ms`` and one ``attributes.<key>`` column per
    attribute (the GenAI ones included). A span that started but never ended is
    kept, with ``end_time`` missing and status ``UNSET``.

    Args:
        source: A frame from :func:`~llmgine.analysis.load_events`, or a log
            source it takes (read by DuckDB without loading the log).
        since: Keep span events at or after this time (naive times are UTC).
        until: Keep span events before this time.
    """
    with open_log(source, since=since, until=until) as log:
        log.con.execute("CREATE TEMP TABLE _spans AS SELECT * FROM span_rows")
        frame = flatten_json(
            log.con,
            "_spans",
            "attributes",
            keep=["context.span_id", *SPAN_COLUMNS],
            prefix="attributes.",
            order_by=_ORDER,
        )
    return frame.set_index("context.span_id")


def create_spans_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``spans`` table (spans_frame's columns) on a connection from ``open_log``."""
    con.execute("CREATE TEMP TABLE _spans AS SELECT * FROM span_rows")
    create_flat_table(
        con,
        "spans",
        "_spans",
        "attributes",
        keep=["context.span_id", *SPAN_COLUMNS],
        prefix="attributes.",
        order_by=_ORDER,
    )


def traces_frame(
    source: Any, *, since: TimeLike | None = None, until: TimeLike | None = None
) -> pd.DataFrame:
    """One row per trace, indexed by ``trace_id``, in the spirit of MLflow's ``search_traces``.

    Columns: ``root_name``, ``start_time``, ``end_time``, ``duration_ms`` (both
    missing when the root span never ended, e.g. its process was killed, however
    long its finished children took), ``span_count``, ``status`` (the root span's),
    ``error_count`` (failures in the trace: spans in error, a command run on a
    worker counted once with its caller's span when both logs are read),
    ``total_tokens`` (GenAI input and output tokens of its spans), ``cost_usd``
    (US dollars of its LLM calls; missing when one of them has no known price) and
    ``cached_calls`` (its LLM calls answered from llmgine's call cache).
    ``source`` and the filters are as for :func:`spans_frame`.
    """
    with open_log(source, since=since, until=until) as log:
        frame = query(log.con, "SELECT * FROM traces")
    return frame.set_index("trace_id")
