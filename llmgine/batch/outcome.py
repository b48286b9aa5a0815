"""What became of one row of a ``map``: its output or error, tokens, cost, latency, trace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmgine.messages.commands import CommandResult

__all__ = ["NOT_RUN", "RowOutcome", "one_line"]

NOT_RUN = "not run"
"""The start of the ``error`` of a row that was never sent (a budget, an interrupt, a raise)."""


def one_line(text: str, limit: int = 500) -> str:
    """``text`` as one readable line: whitespace folded, cut at ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(slots=True)
class RowOutcome:
    """One row's result, as the columns of ``map``'s frame hold it."""

    position: int
    """The row's position in the frame (0-based)."""
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    cached: bool | None = None
    model: str | None = None
    trace_id: str | None = None

    @property
    def failed(self) -> bool:
        """Whether the row has an error (it failed, or was not run)."""
        return self.error is not None

    @classmethod
    def of(
        cls, position: int, result: CommandResult, *, latency_ms: float, trace_id: str | None
    ) -> RowOutcome:
        """The outcome of a row whose prompt ran and gave ``result``."""
        meta = result.metadata
        outcome = cls(
            position,
            latency_ms=latency_ms,
            trace_id=trace_id,
            input_tokens=meta.get("input_tokens"),
            output_tokens=meta.get("output_tokens"),
            cost_usd=meta.get("cost_usd"),
            cached=meta.get("cached"),
            model=meta.get("model"),
        )
        if result.success:
            outcome.output = result.result
        else:
            outcome.error_type = result.error_type or "Error"
            outcome.error = one_line(f"{outcome.error_type}: {result.error}")
        return outcome

    @classmethod
    def not_run(cls, position: int, why: str) -> RowOutcome:
        """The outcome of a row that was never sent, and why."""
        return cls(position, error=one_line(f"{NOT_RUN}: {why}"), error_type="NotRun")

    @classmethod
    def broken(cls, position: int, exc: BaseException, *, stage: str) -> RowOutcome:
        """The outcome of a row that failed before or around its prompt (``stage``)."""
        return cls(
            position,
            error=one_line(f"{stage}: {type(exc).__name__}: {exc}"),
            error_type=type(exc).__name__,
        )
