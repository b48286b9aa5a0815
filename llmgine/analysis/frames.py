"""Frames of a log: one event type, metrics, commands, LLM calls.

Each takes a frame from ``load_events`` or, to avoid loading the whole log, any
source ``load_events`` takes (a file, a directory, a bus) with ``since``/``until``:
DuckDB then reads the JSONL itself and applies the filters while it scans. The
SQL is the views of :mod:`llmgine.analysis.views`, shared with ``query()``.
"""

from __future__ import annotations

from typing import Any

import orjson
import pandas as pd

from llmgine.analysis.json_columns import flatten_json, query
from llmgine.analysis.sources import TimeLike, type_names
from llmgine.analysis.views import open_log, quote

__all__ = ["commands_frame", "events_frame", "llm_calls_frame", "metrics_frame", "view_frame"]


def view_frame(
    source: Any, view: str, *, since: TimeLike | None = None, until: TimeLike | None = None
) -> pd.DataFrame:
    """Every row of one view of the log, as a DataFrame."""
    with open_log(source, since=since, until=until) as log:
        return query(log.con, f'SELECT * FROM "{view}"')


def events_frame(
    source: Any,
    type: str | type,
    *,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
) -> pd.DataFrame:
    """The rows of one event (or command) type, with its payload fields as columns.

    Nested objects become dotted columns (``usage.input_tokens``); the envelope's
    ``timestamp``, ``id``, ``session_id``, ``trace_id`` and ``span_id`` are kept.
    A payload field named like one of those comes as ``data.<name>``.

    Args:
        source: A frame from :func:`load_events`, or a log source it takes.
        type: The type's name or class, e.g. ``"LLMResponseEvent"``.
        since: Keep lines at or after this time (naive times are UTC).
        until: Keep lines before this time.
    """
    (name,) = type_names(type)
    keep = ["timestamp", "id", "session_id", "trace_id", "span_id"]
    with open_log(source, types=[name], since=since, until=until) as log:
        return flatten_json(log.con, "events", "data", keep=keep, where=f"type = {quote(name)}")


def metrics_frame(
    source: Any, *, since: TimeLike | None = None, until: TimeLike | None = None
) -> pd.DataFrame:
    """Every metric in long format: one row per metric of every ``MetricEvent``.

    Columns: ``timestamp``, ``name``, ``value``, ``unit``, ``tags`` (a dict),
    ``session_id``, ``trace_id``, ``event_id``. ``source`` and the filters are as
    for :func:`events_frame`.
    """
    frame = view_frame(source, "metrics", since=since, until=until)
    frame["tags"] = [orjson.loads(t) if isinstance(t, str) else {} for t in frame["tags"]]
    return frame


def commands_frame(
    source: Any, *, since: TimeLike | None = None, until: TimeLike | None = None
) -> pd.DataFrame:
    """One row per executed command, with its outcome.

    Columns: ``command_type``, ``command_id``, ``start``, ``duration_ms``,
    ``success``, ``error_type``, ``error``, ``session_id``, ``trace_id``,
    ``span_id``. ``success`` is a nullable boolean (pandas ``"boolean"``): a
    command with no result in the log (still running, or its process was killed)
    has ``success`` ``<NA>`` and ``duration_ms`` NaN, so ``c[c.success]`` is the
    commands that succeeded, ``c[c.success == False]`` those that failed (``~``
    keeps ``<NA>`` as ``<NA>``, which a mask treats as False) and
    ``c[c.success.isna()]`` the unfinished ones. ``source`` and the filters are as
    for :func:`events_frame`.
    """
    frame = view_frame(source, "commands", since=since, until=until)
    frame["success"] = frame["success"].astype("boolean")
    return frame


def llm_calls_frame(
    source: Any, *, since: TimeLike | None = None, until: TimeLike | None = None
) -> pd.DataFrame:
    """One row per LLM call (``LLMResponseEvent``).

    Columns: ``timestamp``, ``model``, ``provider``, ``input_tokens``,
    ``output_tokens``, ``total_tokens``, ``usage_estimated`` (the server reported no
    counts; they are llmgine's estimate), ``cost_usd`` (US dollars; missing when the
    model's price is unknown, 0.0 for offline and local models and cache hits),
    ``cached`` (answered from llmgine's call cache), ``cost_saved_usd`` (on a cache hit,
    what the original call cost), ``latency_ms``, ``finish_reason``,
    ``conversation_id``, ``tool_calls`` (how many), ``content``, ``prompt_id``,
    ``session_id``, ``trace_id``, ``event_id``. ``source`` and the filters are as
    for :func:`events_frame`.
    """
    return view_frame(source, "llm_calls", since=since, until=until)
