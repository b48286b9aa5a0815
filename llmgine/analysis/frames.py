"""Frames derived from a loaded log: one event type, metrics, commands, LLM calls."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import orjson
import pandas as pd
import pyarrow as pa

from llmgine.analysis.json_columns import flatten_json, query

__all__ = ["commands_frame", "connect", "events_frame", "llm_calls_frame", "metrics_frame"]


@contextmanager
def connect(df: pd.DataFrame, *columns: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with ``df`` (those columns) registered as the table ``events``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"This needs a frame from load_events(); it lacks the column(s) {', '.join(missing)}."
        )
    table = pa.Table.from_pandas(df[list(columns)], preserve_index=False)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("events", table)
        yield con


def events_frame(df: pd.DataFrame, type: str | type) -> pd.DataFrame:
    """The rows of one event (or command) type, with its payload fields as columns.

    Nested objects become dotted columns (``usage.input_tokens``); the envelope's
    ``timestamp``, ``id``, ``session_id``, ``trace_id`` and ``span_id`` are kept.

    Args:
        df: A frame from :func:`load_events`.
        type: The type's name or class, e.g. ``"LLMResponseEvent"``.
    """
    name = type if isinstance(type, str) else type.__name__
    keep = ["timestamp", "id", "session_id", "trace_id", "span_id"]
    with connect(df, *keep, "type", "data") as con:
        con.execute("SET VARIABLE event_type = ?", [name])
        return flatten_json(
            con,
            "events",
            "data",
            keep=keep,
            where="type = getvariable('event_type')",
        )


_METRICS_SCHEMA = (
    '{"metrics": [{"name": "VARCHAR", "value": "DOUBLE", "unit": "VARCHAR", "tags": "JSON"}]}'
)


def metrics_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Every metric in long format: one row per metric of every ``MetricEvent``.

    Columns: ``timestamp``, ``name``, ``value``, ``unit``, ``tags`` (a dict),
    ``session_id``, ``trace_id``, ``event_id``.
    """
    with connect(df, "timestamp", "id", "session_id", "trace_id", "type", "data") as con:
        frame = query(
            con,
            f"""
            SELECT timestamp, m.name AS name, m.value AS value, m.unit AS unit, m.tags AS tags,
                   session_id, trace_id, id AS event_id
            FROM (
                SELECT *, unnest(from_json(data::JSON, '{_METRICS_SCHEMA}').metrics) AS m
                FROM events WHERE type = 'MetricEvent'
            )
            """,
        )
    frame["tags"] = [orjson.loads(t) if isinstance(t, str) else {} for t in frame["tags"]]
    return frame


def commands_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per executed command, with its outcome.

    Columns: ``command_type``, ``command_id``, ``start``, ``duration_ms``,
    ``success``, ``error_type``, ``error``, ``session_id``, ``trace_id``,
    ``span_id``. A command with no result yet (still running, or its process
    ended) has ``success`` missing.
    """
    schema = (
        '{"command_result": {"success": "BOOLEAN", "error": "VARCHAR", "error_type": "VARCHAR",'
        ' "command_id": "VARCHAR", "duration_ms": "DOUBLE"}}'
    )
    with connect(
        df, "kind", "type", "id", "timestamp", "session_id", "trace_id", "span_id", "data"
    ) as con:
        return query(
            con,
            f"""
            WITH results AS (
                SELECT from_json(data::JSON, '{schema}').command_result AS r FROM events
                WHERE type IN ('CommandResultEvent', 'CommandErrorEvent')
            )
            SELECT c.type AS command_type, c.id AS command_id, c.timestamp AS start,
                   r.duration_ms AS duration_ms, r.success AS success,
                   r.error_type AS error_type, r.error AS error,
                   c.session_id AS session_id, c.trace_id AS trace_id, c.span_id AS span_id
            FROM events c LEFT JOIN results ON results.r.command_id = c.id
            WHERE c.kind = 'command'
            ORDER BY c.timestamp
            """,
        )


_LLM_SCHEMA = (
    '{"conversation_id": "VARCHAR", "prompt_id": "VARCHAR", "content": "VARCHAR", '
    '"model": "VARCHAR", "provider": "VARCHAR", "finish_reason": "VARCHAR", '
    '"usage": {"input_tokens": "BIGINT", "output_tokens": "BIGINT", "estimated": "BOOLEAN"}, '
    '"latency_ms": "DOUBLE", "tool_call_count": "BIGINT"}'
)


def llm_calls_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per LLM call (``LLMResponseEvent``).

    Columns: ``timestamp``, ``model``, ``provider``, ``input_tokens``,
    ``output_tokens``, ``total_tokens``, ``usage_estimated`` (the server reported no
    counts; they are llmgine's estimate), ``latency_ms``, ``finish_reason``,
    ``conversation_id``, ``tool_calls`` (how many), ``content``, ``prompt_id``,
    ``session_id``, ``trace_id``, ``event_id``.
    """
    with connect(df, "timestamp", "id", "session_id", "trace_id", "type", "data") as con:
        return query(
            con,
            f"""
            SELECT timestamp, s.model AS model, s.provider AS provider,
                   s.usage.input_tokens AS input_tokens, s.usage.output_tokens AS output_tokens,
                   s.usage.input_tokens + s.usage.output_tokens AS total_tokens,
                   coalesce(s.usage.estimated, false) AS usage_estimated,
                   s.latency_ms AS latency_ms, s.finish_reason AS finish_reason,
                   s.conversation_id AS conversation_id, s.tool_call_count AS tool_calls,
                   s.content AS content, s.prompt_id AS prompt_id,
                   session_id, trace_id, id AS event_id
            FROM (SELECT *, from_json(data::JSON, '{_LLM_SCHEMA}') AS s
                  FROM events WHERE type = 'LLMResponseEvent')
            ORDER BY timestamp
            """,
        )
