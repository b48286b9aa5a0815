"""The engine's retries, rate limits and fallback models: made once, read for every prompt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from llmgine.errors import ConfigurationError
from llmgine.llm.limits import Limiter, LimitSetting, limits_for
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.resolve import provider_for
from llmgine.llm.retries import Retries

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus

__all__ = ["Resilience"]


class Resilience:
    """What :func:`~llmgine.llm.pipeline.build_pipeline` adds for failing and busy servers.

    Args:
        bus: The engine's bus (rate limits are shared in its Redis while connected).
        retries: The retry policy of each call; ``None`` (or ``attempts=1``): no retries.
        limits: Rate limits, one for every model or one per model.
        fallback: Model strings (or providers) tried in order when the model asked fails.

    Raises:
        ConfigurationError: A fallback model cannot be made (an unknown provider, no key).
    """

    def __init__(
        self,
        bus: MessageBus,
        *,
        retries: Retries | None = None,
        limits: LimitSetting = None,
        fallback: Sequence[str | Provider] = (),
    ) -> None:
        self.bus = bus
        self.retries = retries if retries is not None and retries.attempts > 1 else None
        self.limits = limits
        if isinstance(fallback, str):
            raise ConfigurationError(
                f"fallback= takes a list of model strings, e.g. fallback=[{fallback!r}]; "
                f"got the string {fallback!r}."
            )
        self.fallback: list[Provider] = [
            provider_for(model) if isinstance(model, str) else model for model in fallback
        ]
        """The fallback models' providers, made once (an error shows at once)."""
        self._limiters: dict[str, Limiter] = {}

    def limiter(self, provider: Provider) -> Limiter | None:
        """The rate-limit buckets of ``provider``'s model, if it has limits."""
        key = provider.model_string
        limiter = self._limiters.get(key)
        if limiter is None:
            limits = limits_for(self.limits, key, provider.model)
            if limits is None:
                return None
            limiter = self._limiters[key] = Limiter(limits, key, self.bus)
        return limiter
