"""Spans and traces from a loaded log, in the column shape of Arize Phoenix."""

from __future__ import annotations

import pandas as pd

from llmgine.analysis.frames import connect
from llmgine.analysis.json_columns import flatten_json, query

__all__ = ["spans_frame", "traces_frame"]

_SPAN_SCHEMA = (
    '{"name": "VARCHAR", "span_context": {"trace_id": "VARCHAR", "span_id": "VARCHAR", '
    '"parent_span_id": "VARCHAR"}, "start_time": "VARCHAR", "end_time": "VARCHAR", '
    '"status": "VARCHAR", "status_message": "VARCHAR", "duration_ms": "DOUBLE", '
    '"span_kind": "VARCHAR", "attributes": "JSON"}'
)

_SPANS_SQL = f"""
CREATE TEMP TABLE spans AS
WITH t AS (
    SELECT timestamp, from_json(data::JSON, '{_SPAN_SCHEMA}') AS s
    FROM events WHERE type = 'TraceEvent'
)
SELECT
    s.span_context.span_id AS "context.span_id",
    any_value(s.span_context.trace_id) AS "context.trace_id",
    any_value(s.span_context.parent_span_id) AS parent_id,
    arg_min(s.name, timestamp) AS name,
    arg_min(s.span_kind, timestamp) AS span_kind,
    min(try_cast(s.start_time AS TIMESTAMPTZ)) AS start_time,
    max(try_cast(s.end_time AS TIMESTAMPTZ)) AS end_time,
    coalesce(max(s.status), 'UNSET') AS status_code,
    max(s.status_message) AS status_message,
    coalesce(
        max(s.duration_ms),
        (epoch_us(max(try_cast(s.end_time AS TIMESTAMPTZ)))
         - epoch_us(min(try_cast(s.start_time AS TIMESTAMPTZ)))) / 1000.0
    ) AS duration_ms,
    -- The end event carries every attribute; a span that never ended has its start's.
    coalesce(
        max(s.attributes::VARCHAR) FILTER (WHERE s.end_time IS NOT NULL),
        max(s.attributes::VARCHAR)
    ) AS attributes,
    min(timestamp) AS _first
FROM t
WHERE s.span_context.span_id IS NOT NULL
GROUP BY s.span_context.span_id
"""

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


def spans_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per span, indexed by ``context.span_id``, with Phoenix-style columns.

    Columns: ``context.trace_id``, ``parent_id``, ``name``, ``span_kind``,
    ``start_time``, ``end_time``, ``status_code`` (``OK``/``ERROR``/``UNSET``),
    ``status_message``, ``duration_ms`` and one ``attributes.<key>`` column per
    attribute (the GenAI ones included). A span that started but never ended is
    kept, with ``end_time`` missing and status ``UNSET``.
    """
    with connect(df, "timestamp", "type", "data") as con:
        con.execute(_SPANS_SQL)
        frame = flatten_json(
            con,
            "spans",
            "attributes",
            keep=["context.span_id", *SPAN_COLUMNS],
            prefix="attributes.",
            order_by='_first, "context.span_id"',
        )
    return frame.set_index("context.span_id")


_TRACES_SQL = """
WITH marked AS (
    SELECT s.*, (s.parent_id IS NULL OR p."context.span_id" IS NULL) AS is_root,
           coalesce(try_cast(json_extract_string(s.attributes, '$."gen_ai.usage.input_tokens"')
                             AS BIGINT), 0)
           + coalesce(try_cast(json_extract_string(s.attributes, '$."gen_ai.usage.output_tokens"')
                               AS BIGINT), 0) AS tokens
    FROM spans s LEFT JOIN spans p ON s.parent_id = p."context.span_id"
)
SELECT
    "context.trace_id" AS trace_id,
    arg_min(name, _first) FILTER (WHERE is_root) AS root_name,
    min(start_time) AS start_time,
    max(end_time) AS end_time,
    coalesce(
        arg_min(duration_ms, _first) FILTER (WHERE is_root),
        (epoch_us(max(end_time)) - epoch_us(min(start_time))) / 1000.0
    ) AS duration_ms,
    count(*) AS span_count,
    arg_min(status_code, _first) FILTER (WHERE is_root) AS status,
    count(*) FILTER (WHERE status_code = 'ERROR') AS error_count,
    sum(tokens)::BIGINT AS total_tokens
FROM marked
GROUP BY "context.trace_id"
ORDER BY min(_first), "context.trace_id"
"""


def traces_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trace, indexed by ``trace_id``, in the spirit of MLflow's ``search_traces``.

    Columns: ``root_name``, ``start_time``, ``end_time``, ``duration_ms``,
    ``span_count``, ``status`` (the root span's), ``error_count`` (spans in
    error) and ``total_tokens`` (GenAI input and output tokens of its spans).
    """
    with connect(df, "timestamp", "type", "data") as con:
        con.execute(_SPANS_SQL)
        frame = query(con, _TRACES_SQL)
    return frame.set_index("trace_id")
