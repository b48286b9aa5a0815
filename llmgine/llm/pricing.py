"""What a call costs in US dollars (placeholder: the cost helper replaces this module)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from llmgine.llm.types import Usage

__all__ = ["Price", "Prices"]


class Price(BaseModel):
    """A model's price per million tokens."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None


class Prices:
    """Prices by model: overrides first, then the bundled price data."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self.overrides = dict(overrides or {})

    def cost(self, provider: str, model: str, usage: Usage) -> float | None:
        """The cost of ``usage`` on ``model``; ``None`` when the price is unknown."""
        return None
