"""The budget step: refuses a call once the budget is spent (placeholder: the cost helper's)."""

from __future__ import annotations

from llmgine.llm.budget import BudgetKeeper
from llmgine.llm.commands import PromptCommand
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider

__all__ = ["Budgeted"]


class Budgeted(WrapperProvider):
    """Checks the budget before each call of ``inner`` and counts its spend after."""

    def __init__(self, inner: Provider, keeper: BudgetKeeper, command: PromptCommand) -> None:
        super().__init__(inner)
        self.keeper = keeper
        self.command = command
