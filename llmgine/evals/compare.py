"""Variants against a baseline, row by row: where each wins, loses or ties, and the totals."""

from __future__ import annotations

import html
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
    """Per variant and scorer: ``wins``, ``losses``, ``ties``, ``skipped`` (data rows
    left out because a side has no score there: its prompt or scorer failed on every
    repeat) and ``mean_diff``. Every variant is listed, even one whose rows all failed."""

    @property
    def disagreements(self) -> pd.DataFrame:
        """The rows where a variant does not tie the baseline."""
        return self.rows[self.rows["outcome"] != "tie"]

    @property
    def skipped_note(self) -> str:
        """A sentence saying how many rows were left out and why; empty when none was."""
        if "skipped" not in self.totals.columns:
            return ""
        skipped = int(self.totals["skipped"].sum())
        if not skipped:
            return ""
        return (
            f"{skipped} comparison{'s' if skipped != 1 else ''} of a row left out (column "
            "'skipped'): the variant or the baseline has no score there, its prompt or scorer "
            "failed; see the results' 'error' and 'scorer_errors' columns."
        )

    def __repr__(self) -> str:
        note = self.skipped_note
        text = f"Comparison against {self.baseline!r}:\n{self.totals.to_string()}"
        return f"{text}\n{note}" if note else text

    def _repr_html_(self) -> str:
        head = f"<b>Against {self.baseline}</b>"
        differ = self.disagreements
        rows = differ.to_html() if len(differ) else "<p>No row differs.</p>"
        note = f"<p>{html.escape(self.skipped_note)}</p>" if self.skipped_note else ""
        return f"<div>{head}{self.totals.to_html()}{note}<b>Rows that differ</b>{rows}</div>"


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
    for (its prompt or scorer failed) are left out and counted in the totals'
    ``skipped`` column. Data rows are told apart by
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
    skipped: dict[tuple[str, str], int] = {}
    for variant in variants:
        if variant == baseline:
            continue
        for key in dict.fromkeys(keyed["_row"]):
            for name in names:
                skipped.setdefault((variant, name), 0)
                base = _get(means, baseline, key, f"score.{name}")
                score = _get(means, variant, key, f"score.{name}")
                if math.isnan(base) or math.isnan(score):
                    skipped[(variant, name)] += 1
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
    totals = _totals(rows, skipped)
    return Comparison(baseline=baseline, rows=rows, totals=totals)


def _get(means: pd.DataFrame, variant: str, key: Any, column: str) -> float:
    try:
        value: Any = means.at[(variant, key), column]
    except KeyError:
        return math.nan
    return float(value)


def _totals(rows: pd.DataFrame, skipped: dict[tuple[str, str], int]) -> pd.DataFrame:
    """Wins, losses, ties, skipped and mean diff per (variant, scorer), every pair listed."""
    import pandas as pd

    records = []
    for (variant, name), left_out in skipped.items():
        mine = rows[(rows["variant"] == variant) & (rows["scorer"] == name)]
        outcomes = mine["outcome"]
        records.append(
            {
                "variant": variant,
                "scorer": name,
                "wins": int((outcomes == "win").sum()),
                "losses": int((outcomes == "loss").sum()),
                "ties": int((outcomes == "tie").sum()),
                "skipped": left_out,
                "mean_diff": float(mine["diff"].mean()) if len(mine) else math.nan,
            }
        )
    columns = ["variant", "scorer", "wins", "losses", "ties", "skipped", "mean_diff"]
    frame = pd.DataFrame(records, columns=columns).astype(
        {"wins": "int64", "losses": "int64", "ties": "int64", "skipped": "int64"}
    )
    return frame.set_index(["variant", "scorer"])
