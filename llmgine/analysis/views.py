"""The log as DuckDB views: events, spans, metrics, commands, llm_calls and traces.

One set of SQL serves both ways in: straight over the JSONL files (nothing is
loaded into pandas, filters are pushed into the scan) and over a frame from
``load_events``. The frames in :mod:`llmgine.analysis.frames` are ``SELECT *``
from these views, so :func:`~llmgine.analysis.query` and the frames always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pandas as pd
import pyarrow as pa

from llmgine.analysis.sources import TimeLike, log_files, parse_time, type_names
from llmgine.errors import LogSourceError
from llmgine.observability.codec import ENVELOPE_FIELDS

__all__ = [
    "BAD_LINE",
    "ENVELOPE_COLUMNS",
    "MAX_LINE_BYTES",
    "VIEWS",
    "LogDatabase",
    "add_checks",
    "files_sql",
    "keep_sql",
    "once_sql",
    "open_log",
    "quote",
    "read_errors",
]

ENVELOPE_COLUMNS = list(ENVELOPE_FIELDS)
"""The envelope's keys, as the codec writes them: the columns of the ``events`` view."""

READ_COLUMNS = (
    "{kind: 'VARCHAR', type: 'VARCHAR', module: 'VARCHAR', id: 'VARCHAR', "
    "timestamp: 'TIMESTAMPTZ', session_id: 'VARCHAR', trace_id: 'VARCHAR', "
    "span_id: 'VARCHAR', metadata: 'JSON', data: 'JSON'}"
)
MAX_LINE_BYTES = 64 * 2**20
"""A longer line is counted as unreadable: DuckDB's buffers grow with this bound."""
_NOT_STRICT = "llmgine_not_strict_json"
_DEPTH = 1023
"""Nesting the codec reads inside the envelope (orjson's 1024 levels, less the envelope's)."""


def _suspect(column: str) -> str:
    """SQL: the JSON text of ``column`` may hold what strict JSON has not (cheap pre-check)."""
    text = f"{column}::VARCHAR"
    return (
        f"(contains({text}, 'NaN') OR contains({text}, 'Infinity') OR "
        f"(length({text}) >= {2 * _DEPTH} AND length({text}) - "
        f"length(replace(replace({text}, '[', ''), '{{', '')) >= {_DEPTH}))"
    )


BAD_LINE = (
    "(kind IS NULL OR type IS NULL OR id IS NULL OR timestamp IS NULL OR coalesce("
    f"CASE WHEN {_suspect('data')} OR {_suspect('metadata')} "
    f"THEN {_NOT_STRICT}(data::VARCHAR) OR {_NOT_STRICT}(metadata::VARCHAR) END, FALSE))"
)
"""A line without these, or that strict JSON cannot read, is not an llmgine envelope:
skipped and counted, as :func:`~llmgine.observability.read_log` skips it. DuckDB reads
``NaN``/``Infinity`` and any nesting; the codec (orjson) reads neither, so those lines
are judged by the codec's own parser (needs :func:`add_checks` on the connection)."""


def _not_strict_json(text: str) -> bool:
    """Whether the codec's parser rejects ``text`` where the envelope holds it."""
    try:
        orjson.loads(b'{"data":' + text.encode("utf-8", "surrogatepass") + b"}")
    except orjson.JSONDecodeError:
        return True
    return False


def add_checks(con: duckdb.DuckDBPyConnection) -> None:
    """Give ``con`` the function :data:`BAD_LINE` calls."""
    con.create_function(_NOT_STRICT, _not_strict_json, ["VARCHAR"], "BOOLEAN")


_RESULTS = "('CommandResultEvent', 'CommandErrorEvent')"
_RESULT_SCHEMA = (
    '{"command_result": {"success": "BOOLEAN", "error": "VARCHAR", "error_type": "VARCHAR",'
    ' "command_id": "VARCHAR", "duration_ms": "DOUBLE"}}'
)
_LLM_SCHEMA = (
    '{"conversation_id": "VARCHAR", "prompt_id": "VARCHAR", "content": "VARCHAR", '
    '"model": "VARCHAR", "provider": "VARCHAR", "finish_reason": "VARCHAR", '
    '"usage": {"input_tokens": "BIGINT", "output_tokens": "BIGINT", "estimated": "BOOLEAN", '
    '"cost_usd": "DOUBLE"}, "latency_ms": "DOUBLE", "tool_call_count": "BIGINT", '
    '"cost_usd": "DOUBLE", "cached": "BOOLEAN", "cost_saved_usd": "DOUBLE"}'
)
_METRICS_SCHEMA = (
    '{"metrics": [{"name": "VARCHAR", "value": "DOUBLE", "unit": "VARCHAR", "tags": "JSON"}]}'
)
_SPAN_SCHEMA = (
    '{"name": "VARCHAR", "span_context": {"trace_id": "VARCHAR", "span_id": "VARCHAR", '
    '"parent_span_id": "VARCHAR"}, "start_time": "VARCHAR", "end_time": "VARCHAR", '
    '"status": "VARCHAR", "status_message": "VARCHAR", "duration_ms": "DOUBLE", '
    '"span_kind": "VARCHAR", "attributes": "JSON"}'
)

VIEWS: dict[str, str] = {
    # One row per readable line: the envelope, as load_events gives it.
    "events": f"""
SELECT {", ".join(ENVELOPE_COLUMNS)} FROM raw WHERE NOT _bad AND _keep
""",
    # One row per metric of every MetricEvent (metrics_frame).
    "metrics": f"""
SELECT timestamp, m.name AS name, m.value AS value, m.unit AS unit, m.tags AS tags,
       session_id, trace_id, id AS event_id
FROM (
    SELECT *, unnest(from_json(data, '{_METRICS_SCHEMA}').metrics) AS m
    FROM events WHERE type = 'MetricEvent'
)
""",
    # One row per command, with its result (commands_frame). One scan: a command and its
    # result meet in a GROUP BY on the command's id, not in a self-join.
    "commands": f"""
WITH lines AS (
    SELECT kind, type, id, timestamp, session_id, trace_id, span_id,
           CASE WHEN kind = 'command' THEN NULL
                ELSE from_json(data, '{_RESULT_SCHEMA}').command_result END AS r
    FROM events WHERE kind = 'command' OR type IN {_RESULTS}
), keyed AS (
    SELECT *, CASE WHEN kind = 'command' THEN id ELSE r.command_id END AS key FROM lines
)
SELECT any_value(type) FILTER (WHERE kind = 'command') AS command_type,
       key AS command_id,
       min(timestamp) FILTER (WHERE kind = 'command') AS start,
       any_value(r.duration_ms) FILTER (WHERE r IS NOT NULL) AS duration_ms,
       any_value(r.success) FILTER (WHERE r IS NOT NULL) AS success,
       any_value(r.error_type) FILTER (WHERE r IS NOT NULL) AS error_type,
       any_value(r.error) FILTER (WHERE r IS NOT NULL) AS error,
       any_value(session_id) FILTER (WHERE kind = 'command') AS session_id,
       any_value(trace_id) FILTER (WHERE kind = 'command') AS trace_id,
       any_value(span_id) FILTER (WHERE kind = 'command') AS span_id
FROM keyed
WHERE key IS NOT NULL
GROUP BY key
HAVING count(*) FILTER (WHERE kind = 'command') > 0
ORDER BY start, command_id
""",
    # One row per LLMResponseEvent (llm_calls_frame).
    "llm_calls": f"""
SELECT timestamp, s.model AS model, s.provider AS provider,
       s.usage.input_tokens AS input_tokens, s.usage.output_tokens AS output_tokens,
       s.usage.input_tokens + s.usage.output_tokens AS total_tokens,
       coalesce(s.usage.estimated, false) AS usage_estimated,
       coalesce(s.cost_usd, s.usage.cost_usd) AS cost_usd,
       coalesce(s.cached, false) AS cached, s.cost_saved_usd AS cost_saved_usd,
       s.latency_ms AS latency_ms, s.finish_reason AS finish_reason,
       s.conversation_id AS conversation_id, s.tool_call_count AS tool_calls,
       s.content AS content, s.prompt_id AS prompt_id,
       session_id, trace_id, id AS event_id
FROM (SELECT *, from_json(data, '{_LLM_SCHEMA}') AS s
      FROM events WHERE type = 'LLMResponseEvent')
ORDER BY timestamp, event_id
""",
    # One row per span, attributes as one JSON object (spans_frame spreads them out).
    "span_rows": f"""
WITH t AS (
    SELECT timestamp, from_json(data, '{_SPAN_SCHEMA}') AS s
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
    )::JSON AS attributes,
    min(timestamp) AS _first
FROM t
WHERE s.span_context.span_id IS NOT NULL
GROUP BY s.span_context.span_id
""",
    # One row per trace (traces_frame).
    "traces": """
WITH marked AS (
    SELECT s.*, (s.parent_id IS NULL OR p."context.span_id" IS NULL) AS is_root,
           -- A command run on a worker for a caller whose span is here and failed with it:
           -- one failure, counted on the caller's span.
           coalesce(s.attributes->>'$."llmgine.remote.caller"' IS NOT NULL
                    AND p.status_code = 'ERROR', false) AS failed_with_caller,
           coalesce(try_cast(s.attributes->>'$."gen_ai.usage.input_tokens"' AS BIGINT), 0)
           + coalesce(try_cast(s.attributes->>'$."gen_ai.usage.output_tokens"' AS BIGINT), 0)
             AS tokens,
           -- An LLM call that answered (it has usage) and has no cost: its price is unknown.
           s.attributes->>'$."gen_ai.usage.input_tokens"' IS NOT NULL AS answered,
           try_cast(s.attributes->>'$."llmgine.cost_usd"' AS DOUBLE) AS cost,
           coalesce(try_cast(s.attributes->>'$."llmgine.cache.hit"' AS BOOLEAN), false) AS hit
    FROM span_rows s LEFT JOIN span_rows p ON s.parent_id = p."context.span_id"
)
SELECT
    "context.trace_id" AS trace_id,
    arg_min(name, _first) FILTER (WHERE is_root) AS root_name,
    min(start_time) AS start_time,
    -- A trace whose root span never ended (its process was killed) has no end and no
    -- duration, whatever its finished children took.
    CASE WHEN root_ended IS NOT FALSE THEN max(end_time) END AS end_time,
    CASE WHEN root_ended IS NULL  -- no root: the parent links form a cycle
         THEN (epoch_us(max(end_time)) - epoch_us(min(start_time))) / 1000.0
         WHEN root_ended THEN arg_min_null(duration_ms, _first) FILTER (WHERE is_root)
    END AS duration_ms,
    count(*) AS span_count,
    arg_min(status_code, _first) FILTER (WHERE is_root) AS status,
    count(*) FILTER (WHERE status_code = 'ERROR' AND NOT failed_with_caller) AS error_count,
    sum(tokens)::BIGINT AS total_tokens,
    CASE WHEN count(*) FILTER (WHERE answered AND cost IS NULL) > 0 THEN NULL
         ELSE coalesce(sum(cost), 0.0) END AS cost_usd,
    count(*) FILTER (WHERE hit) AS cached_calls
FROM (
    SELECT *, arg_min_null(end_time IS NOT NULL, _first) FILTER (WHERE is_root)
                  OVER (PARTITION BY "context.trace_id") AS root_ended
    FROM marked
)
GROUP BY "context.trace_id", root_ended
ORDER BY min(_first), "context.trace_id"
""",
}
"""The views, in creation order; ``spans`` (attributes spread into columns) is made on demand."""


def quote(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


class LogDatabase:
    """A DuckDB connection with a log's views, and what was skipped reading it."""

    def __init__(self, con: duckdb.DuckDBPyConnection, sources: list[str]) -> None:
        self.con = con
        self.sources = sources

    def skipped_lines(self) -> int:
        """How many lines are not llmgine envelopes (a full scan of the log)."""
        row = self.con.execute("SELECT count(*) FILTER (WHERE _bad) FROM raw").fetchone()
        return int(row[0]) if row else 0


def keep_sql(
    types: Iterable[str | type] | str | type | None,
    since: TimeLike | None,
    until: TimeLike | None,
) -> str:
    """The SQL condition of the ``types``/``since``/``until`` filters (``TRUE`` for none)."""
    keep = ["TRUE"]
    if types is not None:
        names = type_names(types)
        keep.append(f"list_contains([{', '.join(quote(n) for n in names)}]::VARCHAR[], type)")
    if since is not None:
        keep.append(f"timestamp >= {quote(parse_time(since, 'since').isoformat())}::TIMESTAMPTZ")
    if until is not None:
        keep.append(f"timestamp < {quote(parse_time(until, 'until').isoformat())}::TIMESTAMPTZ")
    return " AND ".join(keep)


_FRAME_NEEDS = ("type", "timestamp", "data")


def _frame_table(frame: pd.DataFrame) -> pa.Table:
    missing = [c for c in _FRAME_NEEDS if c not in frame.columns]
    if missing:
        raise LogSourceError(
            f"This needs a frame from load_events(); it lacks the column(s) {', '.join(missing)}."
        )
    columns: dict[str, Any] = {}
    for name in ENVELOPE_COLUMNS:
        if name == "timestamp":
            columns[name] = pd.to_datetime(frame[name], utc=True)
        elif name in frame.columns:
            columns[name] = frame[name].astype("string")
        else:
            columns[name] = pd.Series([None] * len(frame), dtype="string", index=frame.index)
    return pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False)


_GLOB = {"[": "[[]", "*": "[*]", "?": "[?]"}


def _literal_path(path: Path) -> str:
    """``path`` as a DuckDB file pattern that matches only itself (``b*.jsonl`` is a name)."""
    return "".join(_GLOB.get(ch, ch) for ch in str(path))


def files_sql(files: list[Path], *, filename: bool = False) -> str:
    """A DuckDB relation reading the envelope of every line of ``files``.

    With ``filename``, a ``filename`` column says which file each line is from.
    """
    listed = ", ".join(quote(_literal_path(f)) for f in files)
    return (
        f"read_json([{listed}], format = 'newline_delimited', ignore_errors = true, "
        f"maximum_object_size = {MAX_LINE_BYTES}, columns = {READ_COLUMNS}, "
        f"filename = {str(filename).lower()})"
    )


def once_sql(select: str) -> str:
    """``select`` (with ``id`` and ``_bad`` columns) with each message once.

    The same message read twice (a copy of a log beside it, logs that overlap) is
    one message: one line of each ``id`` is kept (they are the same message). Lines
    that are not messages (``_bad``) are all kept, to be counted. A window over the
    log's ids, in no particular order: used only when more than one file is read.
    """
    return (
        f"SELECT * FROM ({select}) "
        "QUALIFY _bad OR id IS NULL OR row_number() OVER (PARTITION BY _bad, id) = 1"
    )


_EMPTY_TYPES = {"timestamp": "TIMESTAMPTZ", "data": "JSON", "metadata": "JSON"}


def _empty_sql() -> str:
    typed = ", ".join(f"NULL::{_EMPTY_TYPES.get(c, 'VARCHAR')} AS {c}" for c in ENVELOPE_COLUMNS)
    return f"(SELECT {typed} WHERE FALSE)"


@contextmanager
def open_log(
    source: Any,
    *,
    types: Iterable[str | type] | str | type | None = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    memory_limit: str | None = None,
) -> Iterator[LogDatabase]:
    """Open a log (files, a directory, a bus, or a frame from ``load_events``) as views.

    ``types``, ``since`` and ``until`` filter the ``events`` view, so every view
    sees only those lines; over files DuckDB applies them while it scans. A message
    read twice (the same line in two files) is one row of every view.

    Raises:
        LogSourceError: The source cannot be read, or a filter is not a time.
    """
    keep = keep_sql(types, since, until)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        add_checks(con)
        if memory_limit is not None:
            con.execute(f"SET memory_limit = {quote(memory_limit)}")
        if isinstance(source, pd.DataFrame):
            con.register("_frame", _frame_table(source))
            relation = "_frame"
            sources = list(source.attrs.get("sources", []))
            bad = "coalesce(NOT json_valid(data), TRUE)"  # a frame edited by hand
            several = bool(source["id"].duplicated().any()) if "id" in source.columns else False
        else:
            files = [f for f in log_files(source) if _size(f) > 0]
            relation = files_sql(files) if files else _empty_sql()
            sources = [str(f) for f in files]
            bad = BAD_LINE
            several = len(files) > 1
        raw = f"SELECT *, {bad} AS _bad, ({keep}) AS _keep FROM {relation}"
        con.execute(f"CREATE TEMP VIEW raw AS {once_sql(raw) if several else raw}")
        for name, sql in VIEWS.items():
            con.execute(f'CREATE TEMP VIEW "{name}" AS {sql}')
        with read_errors(sources):
            yield LogDatabase(con, sources)


@contextmanager
def read_errors(sources: list[str]) -> Iterator[None]:
    """Turn DuckDB's failures to read a file into one clear :class:`LogSourceError`."""
    try:
        yield
    except duckdb.IOException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = ", ".join(sources) or "the log"
        raise LogSourceError(f"Cannot read {where}: {first}") from None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise LogSourceError(f"Cannot read {path}: {exc.strerror or exc}.") from None
