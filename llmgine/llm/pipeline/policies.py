"""The engine's call policies (prices, cache, budget): made once, read for every prompt."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from llmgine.llm.budget import Budget, BudgetKeeper, Spend
from llmgine.llm.cache import LLMCache, open_cache
from llmgine.llm.pricing import Price, Prices

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus
    from llmgine.llm.commands import PromptCommand

__all__ = ["CacheSetting", "CallPolicies"]

CacheSetting = bool | str | os.PathLike[str] | LLMCache | None
"""``LLMEngine(cache=...)``: ``True`` (the default file), a path, ``"redis"``, an
:class:`~llmgine.llm.cache.LLMCache`, or ``None``/``False`` (no cache)."""


class CallPolicies:
    """What :func:`~llmgine.llm.pipeline.build_pipeline` adds around the real provider.

    Args:
        bus: The engine's bus (a shared cache or budget lives on its Redis when connected).
        prices: Prices per model over the bundled ones.
        cache: The call cache setting.
        budget: A spending limit, or ``None`` (calls are still counted in ``spend``).
    """

    def __init__(
        self,
        bus: MessageBus,
        *,
        prices: Mapping[str, Price] | None = None,
        cache: CacheSetting = None,
        budget: Budget | None = None,
    ) -> None:
        self.prices = Prices(prices)
        self.cache: LLMCache | None = open_cache(cache, bus)
        self._bus = bus
        self._default_cache: LLMCache | None = None
        self.default_cache_on = True
        """Whether ``cache=True`` (every ``map`` row) reaches the default cache file when
        the engine has no cache of its own; ``%llmgine cache off`` turns it off."""
        self.spend = Spend()
        """What the engine's calls have cost so far (``LLMEngine.spend``)."""
        self.budget: BudgetKeeper | None = BudgetKeeper(budget, bus, self.spend)
        """Always there: it counts every call into :attr:`spend`, and refuses calls only
        when a ``budget`` is given."""

    def carry_over(self, previous: CallPolicies) -> None:
        """Keep what ``previous`` (an engine's on a bus now replaced) spent and counted.

        Its spend, its budget's counts (so a budget spent stays spent) and whether ``map``
        may use the default cache file; the prices, cache and budget themselves are given
        to the new engine as settings.
        """
        self.spend = previous.spend
        if previous.budget is not None:
            self.budget = previous.budget.on_bus(self._bus)
        self.default_cache_on = previous.default_cache_on

    def cache_for(self, command: PromptCommand) -> LLMCache | None:
        """The cache ``command`` is answered from (see ``PromptCommand.cache``), if any.

        ``cache=True`` on an engine with no cache of its own is the default cache
        file (:meth:`default_cache`).
        """
        if command.cache is False:
            return None
        if self.cache is not None or command.cache is None:
            return self.cache
        return self.default_cache()

    def default_cache(self) -> LLMCache | None:
        """The default cache file's cache, which ``cache=True`` uses when the engine has none.

        Opened on first use and closed when the bus stops; ``None`` while
        :attr:`default_cache_on` is ``False``.
        """
        if not self.default_cache_on:
            return None
        if self._default_cache is None:
            self._default_cache = open_cache(True, self._bus)
        return self._default_cache
