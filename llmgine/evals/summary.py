"""Per-variant summaries of an experiment's results: means with 95 % intervals, cost, latency.

The interval of a mean: for scores that are all 0 or 1 (a bool scorer, a pass rate)
the Wilson score interval of the proportion, which stays inside [0, 1] and is sound
for few rows; for other scores Student's t-interval of the mean (the t quantile from a
table, interpolated in 1/df: no scipy needed). One score gives no interval (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["mean_interval", "score_columns", "summarize", "t_quantile", "wilson_interval"]

Z95 = 1.959963984540054
"""The standard normal's 97.5 % quantile."""

_T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
    17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
    25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000,
    120: 1.980,
}  # fmt: skip
"""Student's t 97.5 % quantiles by degrees of freedom."""


def t_quantile(df: int) -> float:
    """Student's t 97.5 % quantile for ``df`` degrees of freedom (two-sided 95 %)."""
    if df < 1:
        return math.nan
    if df in _T975:
        return _T975[df]
    known = sorted(_T975)
    if df > known[-1]:
        low, high, t_low, t_high = known[-1], math.inf, _T975[known[-1]], Z95
    else:
        low = max(k for k in known if k < df)
        high = min(k for k in known if k > df)
        t_low, t_high = _T975[low], _T975[high]
    # linear in 1/df, as tables advise between their rows
    share = (1 / low - 1 / df) / (1 / low - (0 if high == math.inf else 1 / high))
    return t_low + (t_high - t_low) * share


def wilson_interval(successes: float, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion ``successes / n``."""
    if n < 1:
        return math.nan, math.nan
    p = successes / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """The mean of ``values`` (NaNs left out) and its 95 % interval: Wilson or t."""
    kept = [float(v) for v in values if not math.isnan(float(v))]
    n = len(kept)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(kept) / n
    if all(v in (0.0, 1.0) for v in kept):
        low, high = wilson_interval(sum(kept), n)
        return mean, low, high
    if n == 1:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in kept) / (n - 1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def score_columns(results: pd.DataFrame) -> list[str]:
    """The scorers' names, from the ``score.<name>`` columns, in order."""
    return [str(c)[len("score.") :] for c in results.columns if str(c).startswith("score.")]


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per variant (in the order they ran): n, each score's mean and interval, ...

    Columns: ``n`` (outputs asked for), ``errors`` (their share that failed), per scorer
    ``score.<name>``, ``score.<name>.low`` and ``score.<name>.high``, then ``cost_usd`` (the
    total, judges included), ``judge_cost_usd`` when a judge ran, ``latency_p50_ms`` and
    ``latency_p95_ms``.
    """
    import pandas as pd

    variants = list(dict.fromkeys(results["variant"]))
    names = score_columns(results)
    rows = []
    for variant in variants:
        part = results[results["variant"] == variant]
        row: dict[str, float | int] = {
            "n": len(part),
            "errors": float(part["error"].notna().mean()) if len(part) else math.nan,
        }
        for name in names:
            mean, low, high = mean_interval(list(part[f"score.{name}"]))
            row[f"score.{name}"], row[f"score.{name}.low"], row[f"score.{name}.high"] = (
                mean,
                low,
                high,
            )
        judge = float(part["judge_cost_usd"].sum()) if "judge_cost_usd" in part else 0.0
        row["cost_usd"] = float(part["cost_usd"].fillna(0.0).sum()) + judge
        if "judge_cost_usd" in part:
            row["judge_cost_usd"] = judge
        latency = part["latency_ms"].dropna()
        row["latency_p50_ms"] = float(latency.quantile(0.5)) if len(latency) else math.nan
        row["latency_p95_ms"] = float(latency.quantile(0.95)) if len(latency) else math.nan
        rows.append(row)
    frame = pd.DataFrame(rows, index=pd.Index(variants, name="variant"))
    frame["n"] = frame["n"].astype("int64")
    return frame
