"""The event every score of an experiment becomes, so the log (and Phoenix) holds it."""

from __future__ import annotations

from typing import Any

from llmgine.messages.events import Event

__all__ = ["EvaluationEvent"]


class EvaluationEvent(Event):
    """One scorer's score of one output: a row of one variant, one repeat.

    Published inside a small span in the row's trace, so the OTLP exporter sends it
    as a ``gen_ai.evaluation.result`` span event; :meth:`Experiment.from_log
    <llmgine.evals.Experiment.from_log>` rebuilds an experiment's scores from these.
    """

    experiment: str
    """The experiment's name."""
    variant: str
    """The variant whose output was scored."""
    row: Any
    """The data row's index label."""
    position: int | None = None
    """The data row's position in the data (0 is the first): tells apart rows that share
    a label."""
    repeat: int
    """Which repeat of the row (0 is the first)."""
    scorer: str
    """The scorer's name (``score.<scorer>`` in the results)."""
    score: float | None
    """The score as a float (a bool as 0 or 1); ``None`` when the scorer failed."""
    label: str | None = None
    """A word for the score when the scorer gave a bool: ``"pass"`` or ``"fail"``."""
    explanation: str | None = None
    """Why, when the scorer says (an LLM judge's reason)."""
    error: str | None = None
    """What went wrong, when the scorer raised (the score is then ``None``)."""
    trace_id: str | None = None
    """The trace of the row's prompt, which the output came from."""
    run: str | None = None
    """The id of the experiment's run that made the output (its prompts carry it as
    ``experiment_run``): tells apart two runs of one name in one log."""
