"""A plain-text summary of a log, for ``python -m llmgine log PATH``."""

from __future__ import annotations

import pandas as pd

from llmgine.analysis.frames import commands_frame, llm_calls_frame

__all__ = ["summarize"]


def summarize(df: pd.DataFrame) -> str:
    """Counts by type, command success and latency percentiles, tokens, skipped lines."""
    lines: list[str] = []
    sources = df.attrs.get("sources", [])
    skipped = df.attrs.get("skipped_lines", 0)
    lines.append(f"{len(df):,} lines from {', '.join(sources) or 'nowhere'}; {skipped:,} skipped")
    if df.empty:
        return "\n".join(lines)
    first, last = df["timestamp"].min(), df["timestamp"].max()
    lines.append(f"from {first:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S} UTC")
    lines.append("")
    lines.append("by type:")
    for name, count in df["type"].value_counts().items():
        lines.append(f"  {count:>9,}  {name}")
    commands = commands_frame(df)
    if not commands.empty:
        done = commands.dropna(subset=["success"])
        rate = done["success"].astype(bool).mean() * 100 if len(done) else float("nan")
        lines.append("")
        lines.append(f"commands: {len(commands):,}, {rate:.1f}% succeeded")
        lines.append(f"  {'type':<32} {'count':>7} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9}")
        for name, group in commands.groupby("command_type"):
            q = group["duration_ms"].quantile([0.5, 0.9, 0.99])
            lines.append(
                f"  {name!s:<32} {len(group):>7,} {q[0.5]:>9.1f} {q[0.9]:>9.1f} {q[0.99]:>9.1f}"
            )
        errors = done[~done["success"].astype(bool)]["error_type"].value_counts()
        for name, count in errors.head(5).items():
            lines.append(f"  failed with {name}: {count:,}")
    calls = llm_calls_frame(df)
    if not calls.empty:
        lines.append("")
        lines.append(
            f"LLM calls: {len(calls):,}; tokens in {int(calls['input_tokens'].sum()):,}, "
            f"out {int(calls['output_tokens'].sum()):,}; latency p50 "
            f"{calls['latency_ms'].median():.1f} ms"
        )
        for (provider, model), group in calls.groupby(["provider", "model"]):
            lines.append(f"  {provider}:{model}  {len(group):,} calls")
    return "\n".join(lines)
