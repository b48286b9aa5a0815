"""An experiment's picture: each variant's mean score with its interval against its cost."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmgine.errors import ConfigurationError
from llmgine.evals.summary import score_columns

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["plot_scores"]


def plot_scores(summary: pd.DataFrame, scorer: str | None = None, ax: Axes | None = None) -> Axes:
    """Plot each variant's mean ``scorer`` score (95 % interval bars) against its total cost.

    A variant whose cost is unknown (every call's price unknown: ``cost_usd`` NaN) is
    not plotted (never at $0): a note under the axes names it. A variant some of whose
    calls' price is unknown is plotted at the known cost, its label saying how many
    calls that leaves out.

    Args:
        summary: :meth:`Experiment.summary <llmgine.evals.Experiment.summary>`'s frame.
        scorer: The score to plot; ``None``: every score, one marker each.
        ax: The axes to draw on (new ones otherwise).

    Raises:
        ConfigurationError: ``scorer`` is not a score of the experiment, or it has none.
    """
    import matplotlib.pyplot as plt

    names = [n for n in score_columns(summary) if not n.endswith((".low", ".high"))]
    if scorer is not None:
        if scorer not in names:
            raise ConfigurationError(f"No score {scorer!r} to plot: the scores are {names}.")
        names = [scorer]
    if not names:
        raise ConfigurationError("The experiment has no scores to plot: give it scorers.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    unknown = [str(v) for v in summary.index[summary["cost_usd"].isna()]]
    priced = summary[summary["cost_usd"].notna()]  # an unknown cost has no place: not at $0
    cost = priced["cost_usd"].astype(float)
    unpriced = priced.get("unpriced_calls")
    for name in names:
        mean = priced[f"score.{name}"].astype(float)
        low = (mean - priced[f"score.{name}.low"].astype(float)).clip(lower=0).fillna(0)
        high = (priced[f"score.{name}.high"].astype(float) - mean).clip(lower=0).fillna(0)
        ax.errorbar(cost, mean, yerr=[low, high], fmt="o", capsize=4, label=name)
        for i, (variant, x, y) in enumerate(zip(priced.index, cost, mean, strict=True)):
            offset = (6, 4) if i % 2 == 0 else (6, -12)  # neighbours' names do not overlap
            text = str(variant)
            left_out = 0 if unpriced is None else int(unpriced.iloc[i])
            if left_out:
                text += f" (+{left_out} of unknown price)"
            ax.annotate(text, (x, y), textcoords="offset points", xytext=offset)
    if unknown:
        ax.annotate(
            f"price unknown, not plotted: {', '.join(unknown)} (price it with "
            "LLMEngine(prices=...))",
            (0, 0),
            xycoords="axes fraction",
            xytext=(0, -36),
            textcoords="offset points",
            fontsize="small",
        )
    ax.set_xlabel("cost (USD)")
    ax.set_ylabel("mean score (95 % interval)")
    if len(names) > 1:
        ax.legend()
    else:
        ax.set_title(f"score.{names[0]} by variant")
    return ax
