"""Per-variant summaries of an experiment's results: means with 95 % intervals, cost, latency.

A data row's repeats are one observation, not several: each row's scores are averaged
over its repeats first, so ``n`` counts data rows and repeats never narrow an interval
(a model that answers the same every time adds no information by being asked again).
The interval of the mean over rows: for a pass/fail scorer (one that returned bools)
the Wilson score interval of the proportion, which stays inside [0, 1] and is sound
for few rows (with repeats, of the rows' mean pass rates: conservative when repeats
disagree); for other scorers Student's t-interval of the rows' means (the t quantile
from a table, interpolated in 1/df: no scipy needed). One row gives no t-interval (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "mean_interval",
    "row_keys",
    "score_columns",
    "summarize",
    "t_quantile",
    "wilson_interval",
]

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
    p = min(1.0, max(0.0, successes / n))
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # exact ends at p = 0 and p = 1 (rounding would give 5.6e-17, not 0)
    low = 0.0 if p == 0.0 else min(1.0, max(0.0, centre - half))
    high = 1.0 if p == 1.0 else min(1.0, max(0.0, centre + half))
    return low, high


def mean_interval(
    values: Sequence[float], *, pass_fail: bool = False
) -> tuple[float, float, float]:
    """The mean of ``values`` (NaNs left out) and its 95 % interval.

    Args:
        values: One value per observation (a data row's score, averaged over repeats).
        pass_fail: Whether the values are pass rates of a scorer that returns bools
            (Wilson's interval); otherwise Student's t. The kind comes from the scorer,
            never from the values (a ratio scorer that happens to give only 1.0 is not
            a pass/fail one).
    """
    kept = [float(v) for v in values if not math.isnan(float(v))]
    n = len(kept)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(kept) / n
    if pass_fail:
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


def row_keys(results: pd.DataFrame, positions: Sequence[int] | None = None) -> list[Any]:
    """Which data row each result row is: its position when known, else its label's repr.

    Positions tell apart rows that share a label (``map`` allows repeated labels).
    """
    if positions is not None and len(positions) == len(results):
        return list(positions)
    return [repr(label) for label in results["row"]]


def summarize(
    results: pd.DataFrame,
    *,
    positions: Sequence[int] | None = None,
    pass_fail: Collection[str] = (),
) -> pd.DataFrame:
    """One row per variant (in the order they ran): n, each score's mean and interval, ...

    Columns: ``n`` (data rows; their repeats are averaged first), ``errors`` (the share
    of outputs that failed), per scorer ``score.<name>``, ``score.<name>.low`` and
    ``score.<name>.high``, then ``cost_usd`` (the total, judges included; NaN, never
    0, when the price of every call the variant sent is unknown, else what the calls
    of known price cost), ``unpriced_calls`` (answered calls of unknown price, left
    out of ``cost_usd``, a judge's included), ``judge_cost_usd`` when a judge ran (NaN
    when every judge answer's price is unknown), ``latency_p50_ms``
    and ``latency_p95_ms``.

    Args:
        results: An experiment's results.
        positions: Each result row's data row position (else rows are told apart by label).
        pass_fail: The scorers that returned bools (Wilson intervals; Student's t for the rest).
    """
    import pandas as pd

    variants = list(dict.fromkeys(results["variant"]))
    names = score_columns(results)
    keyed = results.assign(_key=row_keys(results, positions))
    rows = []
    for variant in variants:
        part = keyed[keyed["variant"] == variant]
        row: dict[str, float | int] = {
            "n": int(part["_key"].nunique()),
            "errors": float(part["error"].notna().mean()) if len(part) else math.nan,
        }
        for name in names:  # a row's repeats first averaged: one observation per data row
            per_row = part.groupby("_key", sort=False)[f"score.{name}"].mean()
            mean, low, high = mean_interval(list(per_row), pass_fail=name in pass_fail)
            row[f"score.{name}"], row[f"score.{name}.low"], row[f"score.{name}.high"] = (
                mean,
                low,
                high,
            )
        cost, unpriced = _cost(part)
        if "judge_cost_usd" in part:  # NaN: a judge's answer of unknown price
            judges = part["judge_cost_usd"].astype("float64")
            row["judge_cost_usd"] = judge = float(judges.sum(min_count=1))
            unpriced += int(judges.isna().sum())
            known = [c for c in (cost, judge) if not math.isnan(c)]
            cost = sum(known) if known else math.nan
        row["cost_usd"], row["unpriced_calls"] = cost, unpriced
        latency = part["latency_ms"].dropna()
        row["latency_p50_ms"] = float(latency.quantile(0.5)) if len(latency) else math.nan
        row["latency_p95_ms"] = float(latency.quantile(0.95)) if len(latency) else math.nan
        rows.append(row)
    frame = pd.DataFrame(rows, index=pd.Index(variants, name="variant"))
    frame["n"] = frame["n"].astype("int64")
    frame["unpriced_calls"] = frame["unpriced_calls"].astype("int64")
    columns = [c for c in frame.columns if c != "unpriced_calls"]
    columns.insert(columns.index("cost_usd") + 1, "unpriced_calls")
    return frame[columns]


def _cost(part: pd.DataFrame) -> tuple[float, int]:
    """A variant's cost and its answered calls of unknown price.

    The cost is what the calls of known price cost, NaN (never 0) when the price of
    every call it sent is unknown; a cache hit sent nothing and costs 0.
    """
    costs = part["cost_usd"].astype("float64")
    answered = part["error"].isna()
    unpriced = int((answered & costs.isna()).sum())
    cached = part["cached"].fillna(False).astype(bool) if "cached" in part else False
    priced_sent = int((costs.notna() & ~cached).sum())
    if unpriced and not priced_sent:
        return math.nan, unpriced
    return float(costs.fillna(0.0).sum()), unpriced
