"""The budget step: refuses a call once the budget is spent, and counts each call's spend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from llmgine.llm.budget import BudgetKeeper
from llmgine.llm.commands import PromptCommand
from llmgine.llm.pipeline.priced import Priced
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.types import Completion, LLMRequest, StreamChunk

__all__ = ["BudgetGate", "Budgeted"]


class Budgeted(WrapperProvider):
    """Checks the budget before each call of ``inner`` and counts its spend after.

    It sits above the cache, so a hit is counted as a call that spent nothing. A
    call refused raises :class:`~llmgine.errors.BudgetExceededError` before
    anything is sent: the prompt fails with it. A dollar budget is also given to
    each model's pricing step below, which refuses (``ConfigurationError``, unsent)
    a model whose price is unknown: such a budget could not count it. With a cache
    below it, the check is left to a :class:`BudgetGate` under the cache
    (``check=False`` here), so a hit, which sends nothing, is answered even once the
    budget is spent.

    Args:
        inner: The next step of the pipeline.
        keeper: The engine's budget keeper (it also keeps ``engine.spend``).
        command: The prompt the calls answer (its conversation and id scope the budget).
    """

    def __init__(
        self, inner: Provider, keeper: BudgetKeeper, command: PromptCommand, *, check: bool = True
    ) -> None:
        super().__init__(inner)
        self.keeper = keeper
        self.command = command
        self.check = check
        budget = keeper.budget
        if budget is not None and budget.usd is not None:
            for step in _pricing_steps(inner):  # a model of unknown price: refused unsent
                step.budget = budget

    async def complete(self, request: LLMRequest) -> Completion:
        """Answer through the inner provider if the budget allows; count the spend."""
        if self.check:
            await self.keeper.check(self.command)
        completion = await self.inner.complete(request)
        await self.keeper.add(self.command, completion.model or request.model, completion)
        return completion

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream through the inner provider if the budget allows; count the spend."""
        if self.check:
            await self.keeper.check(self.command)
        async for chunk in self.inner.stream(request):
            if chunk.completion is not None:
                completion = chunk.completion
                await self.keeper.add(self.command, completion.model or request.model, completion)
            yield chunk


class BudgetGate(WrapperProvider):
    """Refuses a call once the budget is spent; below the cache, so only calls that send.

    Args:
        inner: The next step of the pipeline.
        keeper: The engine's budget keeper.
        command: The prompt the calls answer.
    """

    def __init__(self, inner: Provider, keeper: BudgetKeeper, command: PromptCommand) -> None:
        super().__init__(inner)
        self.keeper = keeper
        self.command = command

    async def complete(self, request: LLMRequest) -> Completion:
        """Answer through the inner provider if the budget allows."""
        await self.keeper.check(self.command)
        return await self.inner.complete(request)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream through the inner provider if the budget allows."""
        await self.keeper.check(self.command)
        async for chunk in self.inner.stream(request):
            yield chunk


def _pricing_steps(provider: Provider) -> Iterator[Priced]:
    """Every model's pricing step below ``provider`` (through a fallback's models too)."""
    while isinstance(provider, WrapperProvider):
        if isinstance(provider, Priced):
            yield provider
        for other in getattr(provider, "others", ()):  # a fallback's other models
            yield from _pricing_steps(other)
        provider = provider.inner
