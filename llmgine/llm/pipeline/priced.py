"""The pricing step: sets ``usage.cost_usd`` on each answer of the provider below it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from llmgine.errors import ConfigurationError
from llmgine.llm.pricing import Prices
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.types import Completion, LLMRequest, StreamChunk

if TYPE_CHECKING:
    from llmgine.llm.budget import Budget

__all__ = ["Priced"]


class Priced(WrapperProvider):
    """Prices each answer of ``inner``: its ``usage.cost_usd`` in US dollars, or ``None``.

    It sits under the cache (a stored answer keeps the cost it had, which a hit
    reports as saved) and under a fallback (each model is priced as itself). The
    price comes from ``prices`` (see :mod:`llmgine.llm.pricing`), by the model the
    request named and the one the server says answered.

    Under a dollar budget a model whose price is unknown is refused before anything is
    sent: a budget that cannot count dollars must not let calls through uncounted
    (fail closed).

    Args:
        inner: The next step of the pipeline.
        prices: The engine's prices.
        budget: The engine's budget, if any (only one in dollars refuses anything here).
    """

    def __init__(self, inner: Provider, prices: Prices, budget: Budget | None = None) -> None:
        super().__init__(inner)
        self.prices = prices
        self.budget = budget
        """The engine's budget: when it limits dollars, a model of unknown price is refused."""

    def _check_price(self, request: LLMRequest) -> None:
        """Refuse ``request`` unsent when a dollar budget cannot count its model's price."""
        budget = self.budget
        if budget is None or budget.usd is None:
            return
        if self.prices.known(self.name, request.model, endpoint=self.endpoint):
            return
        where = f" at {self.endpoint}" if self.endpoint else ""
        raise ConfigurationError(
            f"The budget of {budget} cannot count {self.name} model {request.model!r}{where}: "
            "its price is unknown, so the call was not sent. Price it under the name it is "
            f"asked by: LLMEngine(prices={{{request.model!r}: Price(input_per_mtok=..., "
            "output_per_mtok=...)}) (US dollars per million tokens; a price under the name "
            "the server answers with, such as a dated snapshot, is known only after a call), "
            "or limit tokens instead: Budget(tokens=...)."
        )

    def _priced(self, request: LLMRequest, completion: Completion) -> Completion:
        usage = completion.usage
        cost = self.prices.cost(
            self.name,
            request.model,
            usage,
            answered=completion.model,
            endpoint=self.endpoint,
        )
        if cost == usage.cost_usd:
            return completion
        usage = usage.model_copy(update={"cost_usd": cost})
        return completion.model_copy(update={"usage": usage})

    async def complete(self, request: LLMRequest) -> Completion:
        """Answer through the inner provider, priced.

        Raises:
            ConfigurationError: A dollar budget applies and the model's price is unknown.
        """
        self._check_price(request)
        return self._priced(request, await self.inner.complete(request))

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream through the inner provider; the final chunk's completion is priced.

        Raises:
            ConfigurationError: A dollar budget applies and the model's price is unknown.
        """
        self._check_price(request)
        async for chunk in self.inner.stream(request):
            if chunk.completion is not None:
                priced = self._priced(request, chunk.completion)
                chunk = StreamChunk(delta=chunk.delta, completion=priced)
            yield chunk
