"""Score an experiment's outputs: every scorer on every output, each score an event.

Plain scorers run here, in order; an :class:`~llmgine.evals.scorers.LLMJudge` grades
all outputs at once through ``map`` (so its prompts are cached, limited, counted). A
scorer that raises gives a NaN score and a note in ``scorer_errors``; the run goes on.
Each row's scores are published as :class:`~llmgine.evals.events.EvaluationEvent`
inside a small span in the row's trace (the trace its prompt ran in).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from llmgine.errors import ConfigurationError
from llmgine.evals.events import EvaluationEvent
from llmgine.evals.scorers import LLMJudge, Scorer, Verdict, as_score, scorer_name
from llmgine.observability.events import SpanContext
from llmgine.observability.jsonsafe import safe_str
from llmgine.observability.spans import new_span_context

if TYPE_CHECKING:
    import pandas as pd

    from llmgine.bus import MessageBus

__all__ = ["MapCall", "ScoreCell", "Scored", "ScoringContext", "score_results"]

logger = logging.getLogger(__name__)

MapCall = Callable[..., Awaitable["pd.DataFrame"]]
"""``amap`` itself (or a function with its signature): how judges send their prompts."""


@dataclass
class ScoreCell:
    """One scorer's verdict on one output."""

    score: float = math.nan
    label: str | None = None
    explanation: str | None = None
    error: str | None = None


@dataclass
class Scored:
    """What :func:`score_results` gives: the scored results and which scorers are pass/fail."""

    results: pd.DataFrame
    pass_fail: list[str]
    """The scorers that returned bools (their intervals are Wilson's)."""


@dataclass
class ScoringContext:
    """What scoring needs besides the scorers: where outputs came from, where events go."""

    experiment: str
    data: pd.DataFrame | None
    """The experiment's data, for each scorer's ``row`` (``None``: rebuilt from a log)."""
    positions: Sequence[int]
    """For each result row, its data row's position in ``data``."""
    expected: str | None
    output_type: type[BaseModel] | None = None
    bus: MessageBus | None = None
    """Where the scores are published (``None``: nowhere)."""
    run_map: MapCall | None = None
    """How a judge's prompts are sent (``amap`` with the experiment's engine or bus)."""
    map_options: dict[str, Any] = field(default_factory=dict)
    run: str | None = None
    """The id of the run that made the outputs (in each score's event)."""


def _outputs(results: pd.DataFrame, output_type: type[BaseModel] | None) -> list[Any]:
    """Each result row's output: the text, or the ``output_type`` rebuilt from its columns."""
    if "output" in results.columns:
        return list(results["output"])
    names = [str(c)[len("output.") :] for c in results.columns if str(c).startswith("output.")]
    outputs: list[Any] = []
    for _, row in results.iterrows():
        values = {name: row.get(f"output.{name}") for name in names}
        if output_type is None:
            outputs.append(values)
            continue
        try:
            outputs.append(output_type.model_validate(values))
        except ValueError:
            outputs.append(values)
    return outputs


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


async def _plain(scorer: Scorer, output: Any, expected: Any, row: Any) -> ScoreCell:
    try:
        value = scorer(output, expected, row)
        if inspect.isawaitable(value):
            value = await value
        score = as_score(value)
    except Exception as exc:  # a scorer's bug is a note on its cell, not a failed run
        logger.debug("scorer %s raised", scorer_name(scorer), exc_info=True)
        return ScoreCell(error=f"{type(exc).__name__}: {safe_str(exc)}")
    label = ("pass" if value else "fail") if _is_bool(value) else None
    return ScoreCell(score=score, label=label)


def _is_bool(value: Any) -> bool:
    """A bool, numpy's too (``row["n"] % 2 == 0`` gives one): a pass/fail score."""
    if isinstance(value, bool):
        return True
    import numpy as np

    return isinstance(value, np.bool_)


async def _judge(
    judge: LLMJudge,
    outputs: list[Any],
    rows: list[Any],
    expected: list[Any],
    scored: list[int],
    context: ScoringContext,
) -> tuple[dict[int, ScoreCell], dict[int, float]]:
    """Grade the outputs at ``scored`` in one ``map``; the cells and each one's cost."""
    import pandas as pd

    if context.run_map is None:
        raise ConfigurationError(
            f"The judge {judge.name!r} needs a bus to send its prompts to: pass bus= or engine=."
        )
    if not scored:
        return {}, {}
    prompts = [judge.prompt(outputs[i], expected[i], rows[i]) for i in scored]
    frame = pd.DataFrame({"judge_prompt": prompts})
    graded = await context.run_map(
        frame,
        lambda row: str(row["judge_prompt"]),
        model=judge.model,
        output_type=Verdict,
        metadata={"experiment": context.experiment, "judge": judge.name},
        progress=False,
        **{**context.map_options, **judge.options},
    )
    cells: dict[int, ScoreCell] = {}
    costs: dict[int, float] = {}
    for position, (_, answer) in zip(scored, graded.iterrows(), strict=True):
        cost: Any = answer.get("cost_usd")
        failed = answer.get("error") is not None
        # an answer of unknown price: NaN, never 0 (a failed call answered nothing)
        costs[position] = float(cost) if not _missing(cost) else 0.0 if failed else math.nan
        if failed:
            cells[position] = ScoreCell(error=f"judge failed: {answer['error']}")
            continue
        cells[position] = ScoreCell(
            score=float(answer["score"]), explanation=str(answer.get("reason") or "") or None
        )
    return cells, costs


async def score_results(
    results: pd.DataFrame, scorers: Sequence[Scorer | LLMJudge], context: ScoringContext
) -> Scored:
    """Return ``results`` with a ``score.<name>`` column per scorer, their errors, judge costs.

    Rows whose prompt failed are not scored (NaN). Every score is published as an
    :class:`EvaluationEvent` when ``context.bus`` is set, with the bus's console quiet
    (as ``map`` keeps it: the log has every score, the cell is not flooded).
    """
    if context.bus is None:
        return await _score(results, scorers, context)
    from llmgine.batch.api import quiet_console

    with quiet_console(context.bus):
        return await _score(results, scorers, context)


def _pass_fail(cells: dict[int, ScoreCell]) -> bool:
    """Whether a scorer returned bools: every cell it scored has a pass/fail label."""
    scored = [c for c in cells.values() if c.error is None and not math.isnan(c.score)]
    return bool(scored) and all(c.label is not None for c in scored)


async def _score(
    results: pd.DataFrame, scorers: Sequence[Scorer | LLMJudge], context: ScoringContext
) -> Scored:
    import pandas as pd

    results = results.copy()
    outputs = _outputs(results, context.output_type)
    rows: list[Any] = [
        None if context.data is None else context.data.iloc[p] for p in context.positions
    ]
    if context.expected is not None and context.data is not None:
        column = context.data[context.expected]
        expected = [column.iloc[p] for p in context.positions]
    else:
        expected = [None] * len(results)
    failed = [e is not None and not _missing(e) for e in results["error"]]
    scored = [i for i in range(len(results)) if not failed[i]]
    cells: dict[str, dict[int, ScoreCell]] = {}
    judge_costs = [0.0] * len(results)
    for scorer in scorers:
        name = scorer_name(scorer)
        if isinstance(scorer, LLMJudge):
            found, costs = await _judge(scorer, outputs, rows, expected, scored, context)
            for i, cost in costs.items():
                judge_costs[i] += cost
        else:
            found = {i: await _plain(scorer, outputs[i], expected[i], rows[i]) for i in scored}
        cells[name] = found
        results[f"score.{name}"] = pd.Series(
            [found[i].score if i in found else math.nan for i in range(len(results))],
            index=results.index,
            dtype="float64",
        )
        if isinstance(scorer, LLMJudge):
            results[f"reason.{name}"] = pd.Series(
                [found[i].explanation if i in found else None for i in range(len(results))],
                index=results.index,
                dtype=object,
            )
    notes = [
        "; ".join(f"{name}: {c[i].error}" for name, c in cells.items() if i in c and c[i].error)
        or None
        for i in range(len(results))
    ]
    results["scorer_errors"] = pd.Series(notes, index=results.index, dtype=object)
    if any(isinstance(s, LLMJudge) for s in scorers):
        results["judge_cost_usd"] = pd.Series(judge_costs, index=results.index, dtype="float64")
    if context.bus is not None:
        await _publish(results, cells, context)
    return Scored(results, [name for name, found in cells.items() if _pass_fail(found)])


def _label(value: Any) -> Any:
    """A row label as the log holds it: as ``map`` writes it."""
    from llmgine.batch.run import row_label

    return row_label(value)


def _position(positions: Sequence[int], i: int) -> int | None:
    return int(positions[i]) if i < len(positions) else None


async def _publish(
    results: pd.DataFrame, cells: dict[str, dict[int, ScoreCell]], context: ScoringContext
) -> None:
    """Publish each scored row's events inside a span of the row's trace."""
    bus = context.bus
    assert bus is not None
    for i, (_, row) in enumerate(results.iterrows()):
        scores = [(name, c[i]) for name, c in cells.items() if i in c]
        if not scores:
            continue
        trace_id = row.get("trace_id")
        span = bus.span(
            f"evaluate {row['variant']}",
            kind="EVALUATOR",
            experiment=context.experiment,
            variant=str(row["variant"]),
            repeat=int(row["repeat"]),
        )
        if isinstance(trace_id, str) and trace_id:  # a span of the row's own trace
            parent = row.get("span_id")
            span.context = SpanContext(
                trace_id=trace_id,
                span_id=new_span_context().span_id,
                parent_span_id=parent if isinstance(parent, str) else None,
            )
        async with span:
            for name, cell in scores:
                await bus.publish(
                    EvaluationEvent(
                        experiment=context.experiment,
                        variant=str(row["variant"]),
                        row=_label(row["row"]),
                        position=_position(context.positions, i),
                        repeat=int(row["repeat"]),
                        scorer=name,
                        score=None if math.isnan(cell.score) else cell.score,
                        label=cell.label,
                        explanation=cell.explanation,
                        error=cell.error,
                        trace_id=trace_id if isinstance(trace_id, str) else None,
                        run=context.run,
                    )
                )
