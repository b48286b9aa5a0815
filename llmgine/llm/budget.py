"""Spending limits (placeholder: the cost helper replaces this module)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus

__all__ = ["Budget", "BudgetKeeper", "Spend"]


class Budget(BaseModel):
    """A spending limit in dollars and/or tokens."""

    usd: float | None = None
    tokens: int | None = None
    per: Literal["engine", "conversation", "command"] = "engine"


class BudgetKeeper:
    """Counts spend against a budget."""

    def __init__(self, budget: Budget, bus: MessageBus) -> None:
        self.budget = budget
        self.bus = bus


class Spend:
    """What an engine's calls have cost so far."""
