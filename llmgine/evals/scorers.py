"""Scorers: plain functions ``(output, expected, row) -> float | bool``, and the built-ins.

A scorer's name is its function's ``__name__`` (the results' ``score.<name>`` column);
the built-ins that take arguments accept ``name=`` so two of one kind can sit side by side.
A scorer may be ``async``. An LLM judge (:func:`llm_judge`) is a scorer that asks a
model, through the bus, as a cached ``PromptCommand``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from llmgine.errors import ConfigurationError

__all__ = [
    "LLMJudge",
    "Scorer",
    "Verdict",
    "as_score",
    "contains",
    "exact_match",
    "json_valid",
    "llm_judge",
    "matches_schema",
    "regex",
    "scorer_name",
]

Scorer = Callable[[Any, Any, Any], Any]
"""``(output, expected, row) -> float | bool`` (or an awaitable of one); ``row`` is the
data row as a ``pandas.Series``, ``expected`` its ``expected=`` column's value or ``None``."""


def scorer_name(scorer: Scorer | LLMJudge) -> str:
    """The name a scorer's scores go under: its ``name`` or its function's ``__name__``."""
    name = getattr(scorer, "name", None) or getattr(scorer, "__name__", None)
    if not isinstance(name, str) or not name or name == "<lambda>":
        raise ConfigurationError(
            f"The scorer {scorer!r} has no name: define it with `def my_score(output, expected, "
            "row)` (its name names the score column), not a lambda."
        )
    return name


def as_score(value: Any) -> float:
    """A scorer's return value as a float: ``True``/``False`` are 1.0/0.0.

    NaN means "not scored" (e.g. no expected value to compare with): it is left out
    of means, as a failed prompt's row is.

    Raises:
        TypeError: The value is not a number or a bool.
        ValueError: The value is infinite (a mean of it says nothing).
    """
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _finite(float(value))
    try:
        import numpy as np

        if isinstance(value, np.bool_ | np.integer | np.floating):
            return _finite(float(value))
    except ImportError:  # pragma: no cover - pandas brings numpy
        pass
    raise TypeError(f"a scorer must return a number or a bool, not {type(value).__name__}")


def _finite(score: float) -> float:
    if math.isinf(score):
        raise ValueError(f"a scorer must return a finite number (or NaN: not scored), not {score}")
    return score


def _absent(value: Any) -> bool:
    """No expected value: ``None`` or NaN (a missing cell of the data)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(output: Any) -> str:
    if output is None or (isinstance(output, float) and math.isnan(output)):
        return ""
    if isinstance(output, BaseModel):
        return output.model_dump_json()
    if isinstance(output, dict | list):
        return json.dumps(output, default=str)
    return str(output)


def exact_match(output: Any, expected: Any, row: Any) -> bool | float:
    """Whether the output is the expected value (as text, surrounding spaces ignored).

    NaN (not scored) where there is no expected value (``None`` or a missing cell).
    """
    if _absent(expected):
        return math.nan
    return _text(output).strip() == _text(expected).strip()


def contains(output: Any, expected: Any, row: Any) -> bool | float:
    """Whether the output contains the expected text, ignoring case.

    NaN (not scored) where there is no expected value (``None`` or a missing cell).
    """
    if _absent(expected):
        return math.nan
    return _text(expected).strip().casefold() in _text(output).casefold()


def json_valid(output: Any, expected: Any, row: Any) -> bool:
    """Whether the output is JSON (a structured output always is)."""
    if isinstance(output, BaseModel | dict | list):
        return True
    try:
        json.loads(_text(output))
    except ValueError:
        return False
    return True


def regex(pattern: str, *, name: str = "regex", flags: int = 0) -> Scorer:
    """A scorer: whether ``pattern`` is found in the output (``re.search``).

    Args:
        pattern: A regular expression.
        name: The score's name (``score.<name>``).
        flags: ``re`` flags, e.g. ``re.IGNORECASE``.
    """
    compiled = re.compile(pattern, flags)

    def search(output: Any, expected: Any, row: Any) -> bool:
        return compiled.search(_text(output)) is not None

    search.__name__ = search.__qualname__ = name
    return search


def matches_schema(model: type[BaseModel], *, name: str = "matches_schema") -> Scorer:
    """A scorer: whether the output is valid JSON for the pydantic ``model``.

    Args:
        model: The pydantic model the output should match.
        name: The score's name (``score.<name>``).
    """

    def validate(output: Any, expected: Any, row: Any) -> bool:
        if isinstance(output, model):
            return True
        try:
            if isinstance(output, BaseModel | dict):
                data = output.model_dump() if isinstance(output, BaseModel) else output
                model.model_validate(data)
            else:
                model.model_validate_json(_text(output))
        except ValidationError:
            return False
        return True

    validate.__name__ = validate.__qualname__ = name
    return validate


class Verdict(BaseModel):
    """What an LLM judge answers: a score from 0 to 1 and why."""

    score: float = Field(ge=0.0, le=1.0)
    """How well the output meets the criteria: 0 not at all, 1 fully."""
    reason: str
    """One sentence saying why."""


JUDGE_PROMPT = """You grade an answer against criteria.

Criteria: {criteria}

Input: {input}
Answer: {output}
Reference answer: {expected}

Reply with JSON: {{"score": a number from 0 (fails the criteria) to 1 (meets them), \
"reason": one sentence}}."""


@dataclass(frozen=True)
class LLMJudge:
    """A scorer that asks a model whether an output meets ``criteria`` (see :func:`llm_judge`)."""

    criteria: str
    model: str | None = None
    name: str = "llm_judge"
    options: dict[str, Any] = field(default_factory=dict)

    def prompt(self, output: Any, expected: Any, row: Any) -> str:
        """The judge's prompt for one output."""
        items = row.items() if hasattr(row, "items") else []
        shown = "; ".join(f"{k}={_text(v)}" for k, v in items)
        return JUDGE_PROMPT.format(
            criteria=self.criteria,
            input=shown or "(none)",
            output=_text(output),
            expected="(none)" if expected is None else _text(expected),
        )


def llm_judge(
    criteria: str, model: str | None = None, *, name: str = "llm_judge", **options: Any
) -> LLMJudge:
    """A scorer that asks a model to grade each output against ``criteria``.

    Each grading is a ``PromptCommand`` (cached, so a re-run costs nothing twice) on
    the experiment's bus, with :class:`Verdict` as its output type: the score is the
    verdict's ``score`` (0 to 1) and its ``reason`` the score's explanation. What the
    judge costs is in the results' ``judge_cost_usd`` column and in the summary.

    Args:
        criteria: What a good output is, e.g. ``"answers the question politely"``.
        model: The judge's model string (``None``: the engine's model).
        name: The score's name (``score.<name>``).
        **options: Request options for the judge's prompts (``temperature=0``, ...).
    """
    return LLMJudge(criteria=criteria, model=model, name=name, options=dict(options))
