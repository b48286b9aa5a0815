"""The engine's retries, rate limits and fallback models: made once, read for every prompt."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmgine.errors import ConfigurationError
from llmgine.llm.limits import Limiter, LimitSetting, RateLimits, limits_for
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.resolve import provider_for
from llmgine.llm.retries import Retries

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus

__all__ = ["Resilience"]

logger = logging.getLogger(__name__)


class Resilience:
    """What :func:`~llmgine.llm.pipeline.build_pipeline` adds for failing and busy servers.

    Args:
        bus: The engine's bus (rate limits are shared in its Redis while connected).
        retries: The retry policy of each call; ``None`` (or ``attempts=1``): no retries.
        limits: Rate limits, one for every model or one per model.
        fallback: Model strings (or providers) tried in order when the model asked fails.
        model: The engine's model, to warn of a ``limits`` key that names neither it
            nor a fallback model (a typo). Without it, the first prompt's model is used.

    Raises:
        ConfigurationError: A setting of the wrong form (the message shows the right
            one), or a fallback model that cannot be made (an unknown provider, no key).
    """

    def __init__(
        self,
        bus: MessageBus,
        *,
        retries: Retries | None = None,
        limits: LimitSetting = None,
        fallback: Sequence[str | Provider] = (),
        model: Provider | None = None,
    ) -> None:
        self.bus = bus
        _check_retries(retries)
        self.retries = retries if retries is not None and retries.attempts > 1 else None
        _check_limits(limits)
        self.limits = limits
        _check_fallback(fallback)
        self.fallback: list[Provider] = _unique(
            [provider_for(model) if isinstance(model, str) else model for model in fallback]
        )
        """The fallback models' providers, made once (an error shows at once); a model
        given twice is tried once."""
        self._limiters: dict[str, Limiter] = {}
        self._keys_checked = False
        if model is not None:
            self._check_keys(model)

    def limiter(self, provider: Provider) -> Limiter | None:
        """The rate-limit buckets of ``provider``'s model, if it has limits."""
        if not self._keys_checked:
            self._check_keys(provider)
        key = provider.model_string
        limiter = self._limiters.get(key)
        if limiter is None:
            limits = limits_for(self.limits, key, provider.model)
            if limits is None:
                return None
            limiter = self._limiters[key] = Limiter(limits, key, self.bus)
        return limiter

    def _check_keys(self, model: Provider) -> None:
        """Warn of ``limits`` keys that name neither ``model`` nor a fallback model."""
        self._keys_checked = True
        if not isinstance(self.limits, Mapping):
            return
        models = [model, *self.fallback]
        names = {name for p in models for name in (p.model_string, p.model)}
        unknown = [key for key in self.limits if key not in names]
        if unknown:
            logger.warning(
                "LLMEngine(limits=...) has keys that name none of the engine's models, so "
                "their limits apply to no call unless a prompt asks for that model: %s. The "
                "models are %s (a key is a model string or a model name).",
                ", ".join(repr(key) for key in unknown),
                ", ".join(p.model_string for p in models),
            )


def _check_retries(retries: object) -> None:
    if retries is not None and not isinstance(retries, Retries):
        raise ConfigurationError(
            f"retries= takes a Retries, e.g. retries=Retries(attempts=3) (or retries=None for "
            f"no retries); got {_shown(retries)}."
        )


def _check_limits(limits: object) -> None:
    if limits is None or isinstance(limits, RateLimits):
        return
    example = "limits=RateLimits(requests_per_minute=60)"
    if not isinstance(limits, Mapping):
        raise ConfigurationError(
            f"limits= takes a RateLimits for every model, e.g. {example}, or one per model, "
            f"e.g. limits={{'openai:gpt-4o-mini': RateLimits(requests_per_minute=60)}}; got "
            f"{_shown(limits)}."
        )
    for key, value in limits.items():
        if isinstance(key, str) and not key.strip():
            raise ConfigurationError(
                "limits= per model maps a model string to a RateLimits, e.g. "
                "limits={'openai:gpt-4o-mini': RateLimits(requests_per_minute=60)}; got an "
                f"empty model string {key!r}."
            )
        if not isinstance(key, str) or not isinstance(value, RateLimits):
            raise ConfigurationError(
                f"limits= per model maps a model string to a RateLimits, e.g. "
                f"limits={{{key!r}: RateLimits(requests_per_minute=60)}}; got "
                f"{_shown(value)} for {key!r}."
            )


def _check_fallback(fallback: object) -> None:
    if isinstance(fallback, str):
        raise ConfigurationError(
            f"fallback= takes a list of model strings, e.g. fallback=[{fallback!r}]; "
            f"got the string {fallback!r}."
        )
    if not isinstance(fallback, Sequence):
        raise ConfigurationError(
            "fallback= takes a list of model strings, e.g. fallback=['openai:gpt-4o-mini'] "
            f"(fallback=[] for none); got {_shown(fallback)}."
        )
    for model in fallback:
        if not isinstance(model, str | Provider):
            raise ConfigurationError(
                "fallback= takes model strings (or providers), e.g. "
                f"fallback=['openai:gpt-4o-mini']; got {_shown(model)} in the list."
            )
        if isinstance(model, str) and not model.strip():
            raise ConfigurationError(
                "fallback= takes model strings, e.g. fallback=['openai:gpt-4o-mini']; got "
                f"an empty one ({model!r}) in the list, which names no model."
            )


def _unique(models: list[Provider]) -> list[Provider]:
    """``models`` without a model given again (the same model string): each is tried once."""
    seen: set[str] = set()
    unique: list[Provider] = []
    for model in models:
        if model.model_string not in seen:
            seen.add(model.model_string)
            unique.append(model)
    return unique


def _shown(value: Any) -> str:
    """A setting as an error shows it: a number or a short word as it is, else its type.

    Nothing longer is repeated, so a credential given by mistake stays out of the error.
    """
    if value is None or isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str) and len(value) <= 20 and not value.startswith("sk-"):
        return repr(value)
    return f"a {type(value).__name__}"
