"""Which prompt, which model? Experiments over a DataFrame, scored, as DataFrames.

``run_experiment(data=df, prompt="...", variants={...}, scorers=[...])`` runs every row
under every variant (``repeats`` times) through ``map`` and returns an
:class:`Experiment`: tidy ``results``, ``summary()``, ``compare(baseline)``, ``plot()``,
``rescore(scorers)`` and ``add_scorer(scorer)`` (no prompt sent again), and
``Experiment.from_log(path, name)``. Every score is an :class:`EvaluationEvent` in the
log. pandas and matplotlib are imported when first needed.
"""

from llmgine.evals.compare import Comparison
from llmgine.evals.events import EvaluationEvent
from llmgine.evals.experiment import Experiment
from llmgine.evals.run import arun_experiment, run_experiment
from llmgine.evals.scorers import (
    LLMJudge,
    Verdict,
    contains,
    exact_match,
    json_valid,
    llm_judge,
    matches_schema,
    regex,
)

__all__ = [
    "Comparison",
    "EvaluationEvent",
    "Experiment",
    "LLMJudge",
    "Verdict",
    "arun_experiment",
    "contains",
    "exact_match",
    "json_valid",
    "llm_judge",
    "matches_schema",
    "regex",
    "run_experiment",
]
