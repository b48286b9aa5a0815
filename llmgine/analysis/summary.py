"""A plain-text summary of a log, for ``python -m llmgine log PATH``.

One DuckDB query reads the log once, straight from the JSONL files, and returns
a few hundred rows of aggregates (lines by type, commands by type with latency
percentiles and failures, tokens by model): a 10-million-line log is summarised
without loading it into pandas.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from llmgine.analysis.query import query
from llmgine.analysis.sources import log_files
from llmgine.errors import LogSourceError
from llmgine.observability.usd import format_usd

__all__ = ["SUMMARY_SQL", "summarize"]

_RESULT = (
    '{"command_result": {"success": "BOOLEAN", "error_type": "VARCHAR", '
    '"command_type": "VARCHAR", "duration_ms": "DOUBLE"}}'
)
_LLM = (
    '{"model": "VARCHAR", "provider": "VARCHAR", "latency_ms": "DOUBLE", '
    '"usage": {"input_tokens": "BIGINT", "output_tokens": "BIGINT", "cost_usd": "DOUBLE"}, '
    '"cost_usd": "DOUBLE", "cached": "BOOLEAN", "cost_saved_usd": "DOUBLE"}'
)

SUMMARY_SQL = f"""
WITH lines AS (
    SELECT _bad, timestamp, type, kind,
           CASE WHEN type IN ('CommandResultEvent', 'CommandErrorEvent') AND NOT _bad
                THEN from_json(data, '{_RESULT}').command_result END AS r,
           CASE WHEN type = 'LLMResponseEvent' AND NOT _bad
                THEN from_json(data, '{_LLM}') END AS m
    FROM raw WHERE _bad OR _keep
), priced AS (
    SELECT *, coalesce(m.cost_usd, m.usage.cost_usd) AS cost FROM lines
)
SELECT CASE WHEN _bad OR r IS NOT NULL THEN NULL ELSE type END AS line_type,
       CASE WHEN kind = 'command' AND NOT _bad THEN type END AS command_type,
       r.command_type AS result_type,
       m.provider AS provider, m.model AS model,
       count(*) FILTER (WHERE NOT _bad) AS lines,
       count(*) FILTER (WHERE _bad) AS skipped,
       min(timestamp) FILTER (WHERE NOT _bad) AS first,
       max(timestamp) FILTER (WHERE NOT _bad) AS last,
       count(*) FILTER (WHERE type = 'CommandResultEvent') AS result_events,
       count(*) FILTER (WHERE type = 'CommandErrorEvent') AS error_events,
       count(*) FILTER (WHERE r.success) AS succeeded,
       quantile_cont(r.duration_ms, [0.5, 0.95, 0.99]) AS latency,
       histogram(coalesce(r.error_type, 'Error')) FILTER (WHERE NOT r.success) AS errors,
       sum(m.usage.input_tokens) AS tokens_in,
       sum(m.usage.output_tokens) AS tokens_out,
       quantile_cont(m.latency_ms, 0.5) AS llm_latency,
       sum(cost) AS cost_usd,
       count(*) FILTER (WHERE m IS NOT NULL AND cost IS NULL) AS unpriced,
       count(*) FILTER (WHERE m.cached) AS cache_hits,
       sum(m.cost_saved_usd) FILTER (WHERE m.cached) AS saved_usd
FROM priced
GROUP BY ALL
"""
"""The one query behind :func:`summarize`: one scan, a row per kind of line."""


def summarize(
    source: Any, *, since: Any = None, until: Any = None, sources: list[str] | None = None
) -> str:
    """Lines by type, commands (count, success, latency percentiles, failures), LLM calls by model.

    Each model's line has its calls, tokens, cost in US dollars (calls of unknown
    price counted apart, never as 0), cache hits with what they saved, and latency.

    Args:
        source: A log (file, directory, list of files, bus) or a frame from ``load_events``.
        since: Summarise lines at or after this time.
        until: Summarise lines before this time.
        sources: The file names to show (default: the frame's ``attrs`` or the source).

    Raises:
        LogSourceError: The source is missing, a directory holding no ``.jsonl``
            file, or files none of whose lines is an llmgine message (an empty log
            is summarised as 0 lines).
    """
    if isinstance(source, pd.DataFrame):
        names = sources or list(source.attrs.get("sources", []))
        skipped = int(source.attrs.get("skipped_lines", 0))
    else:
        source = log_files(source)  # a directory holding no log is a LogSourceError
        names = sources or [str(f) for f in source]
        skipped = 0
    rows = query(source, SUMMARY_SQL, since=since, until=until)
    if not int(rows["lines"].sum()) and int(rows["skipped"].sum()) and not skipped:
        read = rows if since is None and until is None else query(source, SUMMARY_SQL)
        if not int(read["lines"].sum()):
            raise LogSourceError(
                f"{', '.join(names)} is not an llmgine log: none of its "
                f"{int(read['skipped'].sum()):,} lines is an llmgine message (the JSON lines "
                "a MessageBus writes); give a .jsonl log or a directory of them."
            )
    return _format(rows, names, skipped, filtered=since is not None or until is not None)


def _counts(rows: pd.DataFrame, key: str, value: str = "lines") -> dict[str, int]:
    part = rows[rows[key].notna()]
    totals: dict[str, int] = {}
    for name, n in zip(part[key].tolist(), part[value].tolist(), strict=True):
        totals[str(name)] = totals.get(str(name), 0) + int(n)
    return totals


def _format(
    rows: pd.DataFrame, sources: list[str], skipped_before: int, *, filtered: bool = False
) -> str:
    lines_count = int(rows["lines"].sum())
    skipped = int(rows["skipped"].sum()) + skipped_before
    out = [f"{lines_count:,} lines from {', '.join(sources) or 'nowhere'}; {skipped:,} skipped"]
    if lines_count == 0:
        return "\n".join(out)
    first, last = rows["first"].min(), rows["last"].max()
    out.append(f"from {first:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S} UTC")
    by_type = _counts(rows, "line_type")
    for name in ("CommandResultEvent", "CommandErrorEvent"):
        column = "result_events" if name == "CommandResultEvent" else "error_events"
        if int(rows[column].sum()):
            by_type[name] = int(rows[column].sum())
    out += ["", "by type:"]
    out += [
        f"  {n:>9,}  {name}" for name, n in sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    commands = _counts(rows, "command_type")
    results = rows[rows["result_type"].notna()].set_index("result_type")
    if commands or len(results):
        done = int(results["lines"].sum())
        rate = int(results["succeeded"].sum()) / done * 100 if done else float("nan")
        finished = {str(k): int(n) for k, n in results["lines"].groupby(level=0).sum().items()}
        unfinished = sum(max(n - finished.get(name, 0), 0) for name, n in commands.items())
        head = f"commands: {sum(commands.values()):,}, {rate:.1f}% succeeded"
        if unfinished:
            head = (
                f"commands: {sum(commands.values()):,}, {rate:.1f}% of {done:,} finished "
                f"succeeded, unfinished: {unfinished:,} "
                + (
                    "(no result in the lines since/until keep)"
                    if filtered
                    else "(no result in the log: still running, or its process was killed)"
                )
            )
        out += ["", head]
        out.append(f"  {'type':<32} {'count':>9} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}")
        latency = {str(k): v for k, v in results["latency"].items()}
        for name in sorted(set(commands) | set(latency)):
            q = latency.get(name)
            p50, p95, p99 = (float("nan"),) * 3 if q is None else (q[0], q[1], q[2])
            out.append(
                f"  {name:<32} {commands.get(name, 0):>9,} {p50:>9.1f} {p95:>9.1f} {p99:>9.1f}"
            )
        errors: dict[str, int] = {}
        for histogram in results["errors"].tolist():
            for name, n in dict(histogram or {}).items():
                errors[str(name)] = errors.get(str(name), 0) + int(n)
        ranked = sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))
        out += [f"  failed with {name}: {n:,}" for name, n in ranked[:5]]
    models = rows[rows["model"].notna()].sort_values(["provider", "model"])
    if len(models):
        calls = int(models["lines"].sum())
        tokens_in, tokens_out = int(models["tokens_in"].sum()), int(models["tokens_out"].sum())
        out += [
            "",
            f"LLM calls: {calls:,}; tokens in {tokens_in:,}, out {tokens_out:,}; "
            f"cost {_cost(models)}",
        ]
        for index, one in models.iterrows():
            out.append(
                f"  {one['provider']}:{one['model']}  {int(one['lines']):,} calls, "
                f"{int(one['tokens_in']):,} in, {int(one['tokens_out']):,} out, "
                f"{_cost(models.loc[[index]])}, latency p50 {one['llm_latency']:.1f} ms"
            )
    return "\n".join(out)


def _cost(rows: pd.DataFrame) -> str:
    """``$0.0123``, with the calls of unknown price and the cache's saving said apart."""
    unpriced, hits = int(rows["unpriced"].sum()), int(rows["cache_hits"].sum())
    known = rows["cost_usd"].dropna()
    text = format_usd(float(known.sum())) if len(known) else "price unknown"
    if unpriced and len(known):
        text += f" + {unpriced:,} call{'s' if unpriced > 1 else ''} of unknown price"
    if hits:
        saved = rows["saved_usd"].dropna()
        text += (
            f", {hits:,} cached (saved {format_usd(float(saved.sum()) if len(saved) else None)})"
        )
    return text
