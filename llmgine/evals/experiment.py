"""An experiment's results and what to ask of them: summary, comparison, plot, re-scoring."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from llmgine.errors import ConfigurationError
from llmgine.evals.compare import Comparison, compare
from llmgine.evals.scorers import LLMJudge, Scorer, scorer_name
from llmgine.evals.scoring import MapCall, ScoringContext, score_results
from llmgine.evals.summary import score_columns, summarize

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

    from llmgine.bus import MessageBus

__all__ = ["Experiment"]


@dataclass(eq=False)
class Experiment:
    """What :func:`~llmgine.evals.run_experiment` returns: every output, scored.

    ``results`` is tidy: one row per data row x variant x repeat, with ``row`` (the
    data row's label), ``variant``, ``repeat``, ``output`` (or ``output.<field>`` per
    field of an ``output_type``), ``error``, tokens, ``cost_usd``, ``latency_ms``,
    ``cached``, ``model``, ``trace_id``, one ``score.<scorer>`` column per scorer
    (floats: a bool is 0 or 1; NaN where the prompt or the scorer failed),
    ``scorer_errors`` (what a raising scorer said), and, with an LLM judge, its
    ``reason.<judge>`` and ``judge_cost_usd``. A cost whose price is unknown is NaN,
    never 0.
    """

    name: str
    results: pd.DataFrame
    scorers: list[Scorer | LLMJudge] = field(default_factory=list)
    data: pd.DataFrame | None = field(default=None, repr=False)
    """The data the experiment ran on (``None`` when rebuilt from a log)."""
    expected: str | None = None
    output_type: type[BaseModel] | None = field(default=None, repr=False)
    bus: MessageBus | None = field(default=None, repr=False)
    """Where scores are published; a judge's prompts run on it."""
    run_map: MapCall | None = field(default=None, repr=False)
    positions: list[int] = field(default_factory=list, repr=False)
    """For each result row, its data row's position in ``data``."""
    pass_fail: list[str] = field(default_factory=list, repr=False)
    """The scorers that returned bools: their intervals are Wilson's, the others' t."""
    run: str | None = field(default=None, repr=False)
    """The id of the run that made the outputs (its prompts' ``experiment_run``)."""

    @property
    def variants(self) -> list[str]:
        """The variants' names, in the order they ran."""
        return list(dict.fromkeys(self.results["variant"]))

    @property
    def score_names(self) -> list[str]:
        """The scorers' names (``score.<name>`` columns)."""
        return score_columns(self.results)

    def summary(self) -> pd.DataFrame:
        """One row per variant: counts, scores with intervals, cost and latency.

        Columns: ``n`` (data rows), ``errors`` (the share of outputs that failed), each
        score's mean and 95 % interval (``score.<name>``, ``.low``, ``.high``), ``cost_usd``
        (judges included; NaN, never 0, when every call's price is unknown, else the
        known cost), ``unpriced_calls`` (calls of unknown price it leaves out),
        ``latency_p50_ms``, ``latency_p95_ms``. A row's repeats are
        averaged first, so repeats never narrow an interval: Wilson's interval over the
        rows for a scorer that returned bools (pass/fail), Student's t over the rows'
        means otherwise.
        """
        return summarize(self.results, positions=self.positions or None, pass_fail=self.pass_fail)

    def compare(self, baseline: str) -> Comparison:
        """Every other variant against ``baseline``, row by row and scorer by scorer.

        Returns:
            A :class:`~llmgine.evals.compare.Comparison`: ``rows`` (each row's outcome:
            win, loss or tie), ``totals`` (wins, losses, ties, mean difference per
            variant and scorer) and ``disagreements`` (the rows that differ).

        Raises:
            ConfigurationError: ``baseline`` is not one of the variants.
        """
        return compare(self.results, baseline, positions=self.positions or None)

    def plot(self, scorer: str | None = None, ax: Axes | None = None) -> Axes:
        """Each variant's mean score with its 95 % interval against its cost (matplotlib).

        A variant of unknown cost is left out and named under the axes (never at $0).
        """
        from llmgine.evals.plot import plot_scores

        return plot_scores(self.summary(), scorer, ax)

    def _context(self, bus: MessageBus | None, data: pd.DataFrame | None) -> ScoringContext:
        data = self.data if data is None else data
        if data is None and self.expected is not None:
            raise ConfigurationError(
                f"Experiment {self.name!r} was rebuilt from a log without its data: pass "
                "data=the_frame to score against its expected column."
            )
        positions = self.positions
        if data is not None and not positions:
            where = {repr(label): i for i, label in enumerate(data.index)}
            positions = [where[repr(label)] for label in self.results["row"]]
        bus = bus if bus is not None else self.bus
        run_map = self.run_map
        if run_map is None and bus is not None:
            from llmgine.batch import amap

            def on_bus(frame: pd.DataFrame, template: Any, **kw: Any) -> Any:
                return amap(frame, template, bus=bus, **kw)

            run_map = on_bus
        return ScoringContext(
            experiment=self.name,
            data=data,
            positions=positions,
            expected=self.expected,
            output_type=self.output_type,
            bus=bus,
            run_map=run_map,
            run=self.run,
        )

    async def arescore(
        self,
        scorers: Sequence[Scorer | LLMJudge],
        *,
        bus: MessageBus | None = None,
        data: pd.DataFrame | None = None,
    ) -> Experiment:
        """A new experiment of the same outputs scored by ``scorers`` (the old scores go).

        No prompt is sent again: only an LLM judge asks a model (through the cache).
        Scores are published as ``EvaluationEvent`` s on the experiment's bus (or ``bus``).

        Args:
            scorers: The scorers (see :mod:`llmgine.evals.scorers`).
            bus: Where to publish the scores (default: the experiment's).
            data: The data, for an experiment rebuilt from a log that needs it.
        """
        check_scorers(scorers)
        kept = [c for c in self.results.columns if not _score_column(str(c))]
        context = self._context(bus, data)
        scored = await score_results(self.results[kept], scorers, context)
        return Experiment(
            name=self.name,
            results=scored.results,
            scorers=list(scorers),
            data=context.data,
            expected=self.expected,
            output_type=self.output_type,
            bus=context.bus,
            run_map=self.run_map,
            positions=list(context.positions),
            pass_fail=scored.pass_fail,
            run=self.run,
        )

    def rescore(
        self,
        scorers: Sequence[Scorer | LLMJudge],
        *,
        bus: MessageBus | None = None,
        data: pd.DataFrame | None = None,
    ) -> Experiment:
        """:meth:`arescore` from synchronous code (a notebook cell)."""
        from llmgine.notebook.sync import run_sync

        return run_sync(self.arescore(scorers, bus=bus, data=data))

    async def aadd_scorer(self, scorer: Scorer | LLMJudge) -> Experiment:
        """Score the outputs with one more scorer, in place; no prompt is sent again.

        Returns:
            This experiment, its ``results`` with the new ``score.<name>`` column.

        Raises:
            ConfigurationError: The experiment already has a score of that name.
        """
        name = scorer_name(scorer)
        if name in self.score_names:
            raise ConfigurationError(
                f"Experiment {self.name!r} already has a score {name!r}: give the new "
                "scorer another name, or use rescore() to replace the scores."
            )
        kept = [c for c in self.results.columns if not _score_column(str(c))]
        context = self._context(None, None)
        done = await score_results(self.results[kept], [scorer], context)
        scored = done.results
        results = self.results
        for column in (f"score.{name}", f"reason.{name}"):
            if column in scored.columns:
                results[column] = scored[column]
        notes = [
            "; ".join(n for n in (old, new) if isinstance(n, str) and n) or None
            for old, new in zip(
                results.get("scorer_errors", [None] * len(results)),
                scored["scorer_errors"],
                strict=True,
            )
        ]
        results["scorer_errors"] = notes
        if "judge_cost_usd" in scored.columns:
            before = results.get("judge_cost_usd", 0.0)
            results["judge_cost_usd"] = before + scored["judge_cost_usd"]
        self.scorers.append(scorer)
        self.pass_fail = [n for n in self.pass_fail if n != name] + done.pass_fail
        self.bus, self.positions = context.bus, list(context.positions)
        return self

    def add_scorer(self, scorer: Scorer | LLMJudge) -> Experiment:
        """:meth:`aadd_scorer` from synchronous code (a notebook cell)."""
        from llmgine.notebook.sync import run_sync

        return run_sync(self.aadd_scorer(scorer))

    @classmethod
    def from_log(cls, path: str | Path, name: str) -> Experiment:
        """Rebuild the experiment ``name`` from a log file alone.

        Outputs come from its prompts' results, scores from its ``EvaluationEvent`` s
        (the latest of each, so a rescore is what you get). When the log holds several
        runs of that name (a cell run twice), the latest run is rebuilt, alone.

        Raises:
            ConfigurationError: The log holds no experiment of that name.
        """
        from llmgine.evals.log import experiment_from_log

        return experiment_from_log(path, name)

    def __repr__(self) -> str:
        return (
            f"Experiment({self.name!r}, variants={self.variants}, "
            f"rows={len(self.results)}, scores={self.score_names})"
        )

    def _repr_html_(self) -> str:
        summary = self.summary()
        head = (
            f"<b>Experiment {html.escape(self.name)}</b>: {len(self.variants)} variant(s), "
            f"{len(self.results)} output(s), scores: "
            f"{html.escape(', '.join(self.score_names) or 'none')}"
        )
        return f"<div>{head}{summary.to_html(float_format=lambda v: f'{v:.4g}')}</div>"


def _score_column(column: str) -> bool:
    return column.startswith(("score.", "reason.")) or column in (
        "scorer_errors",
        "judge_cost_usd",
    )


def check_scorers(scorers: Sequence[Scorer | LLMJudge]) -> None:
    """Raise ``ConfigurationError`` for a scorer without a name or two of one name."""
    names = [scorer_name(s) for s in scorers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigurationError(
            f"Two scorers are named {twice}: give one another name (the built-ins take name=)."
        )
