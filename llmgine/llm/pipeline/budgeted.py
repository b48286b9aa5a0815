"""The budget step: refuses a call once the budget is spent, and counts each call's spend."""

from __future__ import annotations

from collections.abc import AsyncIterator

from llmgine.llm.budget import BudgetKeeper
from llmgine.llm.commands import PromptCommand
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.types import Completion, LLMRequest, StreamChunk

__all__ = ["BudgetGate", "Budgeted"]


class Budgeted(WrapperProvider):
    """Checks the budget before each call of ``inner`` and counts its spend after.

    It sits above the cache, so a hit is counted as a call that spent nothing. A
    call refused raises :class:`~llmgine.errors.BudgetExceededError` before
    anything is sent: the prompt fails with it. (Under a dollar budget each model's
    pricing step refuses a model whose price is unknown: see ``Priced``.) With a cache
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
