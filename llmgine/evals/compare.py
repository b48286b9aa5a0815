"""Variants against a baseline, row by row: where each wins, loses or ties, and the totals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmgine.errors import ConfigurationError
from llmgine.evals.summary import row_keys, score_columns

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Comparison", "compare"]


@dataclass
class Comparison:
    """The result of :meth:`Experiment.compare <llmgine.evals.Experiment.compare>`."""

    baseline: str
    rows: pd.DataFrame
    """One row per data row, variant and scorer: ``baseline`` and ``score`` (each the
    mean over repeats), ``diff`` and ``outcome`` (``"win"``, ``"loss"`` or ``"tie"``)."""
    totals: pd.DataFrame
    """Per variant and scorer: ``wins``, ``losses``, ``ties`` and ``mean_diff``."""

    @property
    def disagreements(self) -> pd.DataFrame:
        """The rows where a variant does not tie the baseline."""
        return self.rows[self.rows["outcome"] != "tie"]

    def __repr__(self) -> str:
        return f"Comparison against {self.baseline!r}:\n{self.totals.to_string()}"

    def _repr_html_(self) -> str:
        head = f"<b>Against {self.baseline}</b>"
        differ = self.disagreements
        rows = differ.to_html() if len(differ) else "<p>No row differs.</p>"
        return f"<div>{head}{self.totals.to_html()}<b>Rows that differ</b>{rows}</div>"


def compare(
    results: pd.DataFrame,
    baseline: str,
    *,
    tolerance: float = 1e-9,
    positions: Sequence[int] | None = None,
) -> Comparison:
    """Compare every other variant with ``baseline`` on every scorer, row by row.

    A row's score is its mean over repeats; a variant wins a row when that mean is
    higher than the baseline's by more than ``tolerance``. Rows a side has no score
    for (its prompt or scorer failed) are left out. Data rows are told apart by
    ``positions`` (each result row's position in the data) when given, so rows that
    share a label stay apart; else by label.

    Raises:
        ConfigurationError: ``baseline`` is not one of the variants.
    """
    import pandas as pd

    variants = list(dict.fromkeys(results["variant"]))
    if baseline not in variants:
        raise ConfigurationError(
            f"No variant {baseline!r} to compare with: the variants are {variants}."
        )
    names = score_columns(results)
    keyed = results.assign(_row=row_keys(results, positions))
    labels = dict(zip(keyed["_row"], results["row"], strict=False))
    columns = [f"score.{n}" for n in names]
    means = keyed.groupby(["variant", "_row"], sort=False)[columns].mean()
    records = []
    for variant in variants:
        if variant == baseline:
            continue
        for key in dict.fromkeys(keyed["_row"]):
            for name in names:
                base = _get(means, baseline, key, f"score.{name}")
                score = _get(means, variant, key, f"score.{name}")
                if math.isnan(base) or math.isnan(score):
                    continue
                diff = score - base
                outcome = "win" if diff > tolerance else "loss" if diff < -tolerance else "tie"
                records.append(
                    {
                        "row": labels[key],
                        "variant": variant,
                        "scorer": name,
                        "baseline": base,
                        "score": score,
                        "diff": diff,
                        "outcome": outcome,
                    }
                )
    columns_out = ["row", "variant", "scorer", "baseline", "score", "diff", "outcome"]
    rows = pd.DataFrame(records, columns=columns_out)
    totals = (
        rows.groupby(["variant", "scorer"], sort=False)
        .agg(
            wins=("outcome", lambda s: int((s == "win").sum())),
            losses=("outcome", lambda s: int((s == "loss").sum())),
            ties=("outcome", lambda s: int((s == "tie").sum())),
            mean_diff=("diff", "mean"),
        )
        .astype({"wins": "int64", "losses": "int64", "ties": "int64"})
    )
    return Comparison(baseline=baseline, rows=rows, totals=totals)


def _get(means: pd.DataFrame, variant: str, key: Any, column: str) -> float:
    try:
        value: Any = means.at[(variant, key), column]
    except KeyError:
        return math.nan
    return float(value)
