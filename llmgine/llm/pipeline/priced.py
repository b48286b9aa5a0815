"""The pricing step: sets ``usage.cost_usd`` on each answer (placeholder: the cost helper's)."""

from __future__ import annotations

from llmgine.llm.pricing import Prices
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider

__all__ = ["Priced"]


class Priced(WrapperProvider):
    """Prices each answer of ``inner``."""

    def __init__(self, inner: Provider, prices: Prices) -> None:
        super().__init__(inner)
        self.prices = prices
