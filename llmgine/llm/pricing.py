"""What a call costs in US dollars: ``prices=`` overrides, then the bundled genai-prices data.

A call's cost is set on ``usage.cost_usd`` by the pricing step of the call pipeline
(:class:`~llmgine.llm.pipeline.priced.Priced`). Where a price comes from, first match wins:

1. ``LLMEngine(prices={name: Price(...)})``, ``name`` being the model as the server
   answered it (``"gpt-4o-mini-2024-07-18"``), as the engine names it
   (``"gpt-4o-mini"``), or its model string (``"openai:gpt-4o-mini"``);
2. ``0.0`` for the models that run on this machine or replay a recording:
   ``offline``, ``scripted``, ``replay`` and ``local`` (in-process llama.cpp);
3. the price data bundled with the `genai-prices <https://github.com/pydantic/genai-prices>`_
   package, read offline (llmgine never starts its updater, which fetches), for the
   provider the server is (``api.openai.com``, or a known host such as Groq's);
4. else ``None``: the price is unknown, never a silent 0. The first such call of each
   model logs one warning per engine (per :class:`Prices`). A model on a server of your
   own (llama.cpp, vLLM, Ollama through ``base_url``) is unknown until priced with ``prices=``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmgine.errors import ConfigurationError
from llmgine.llm.types import Usage

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo, ModelPrice

__all__ = ["FREE_PROVIDERS", "Price", "Prices"]

logger = logging.getLogger(__name__)

FREE_PROVIDERS = frozenset({"offline", "scripted", "replay", "local"})
"""Providers whose calls cost exactly 0.0: nothing leaves the machine, or nothing runs."""

_MTOK = 1_000_000.0


class Price(BaseModel):
    """A model's price in US dollars per million tokens.

    Args:
        input_per_mtok: Per million input (prompt) tokens.
        output_per_mtok: Per million output (completion) tokens.
        cached_input_per_mtok: Per million input tokens the server read from its prompt
            cache (``usage.cached_input_tokens``); ``None``: the input price.

    Raises:
        ConfigurationError: A rate is missing, or not a finite number >= 0.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float = Field(ge=0, allow_inf_nan=False)
    output_per_mtok: float = Field(ge=0, allow_inf_nan=False)
    cached_input_per_mtok: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigurationError(
                f"Price({_problems(exc)}). Write Price(input_per_mtok=0.15, "
                "output_per_mtok=0.60) in US dollars per million tokens."
            ) from None

    @field_validator("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a finite number >= 0, not a bool")
        return value

    def cost(self, usage: Usage) -> float:
        """What ``usage`` costs at this price, in US dollars."""
        cached = min(max(usage.cached_input_tokens, 0), usage.input_tokens)
        cached_rate = self.input_per_mtok
        if self.cached_input_per_mtok is not None:
            cached_rate = self.cached_input_per_mtok
        return (
            (usage.input_tokens - cached) * self.input_per_mtok
            + cached * cached_rate
            + usage.output_tokens * self.output_per_mtok
        ) / _MTOK


_NUMBER_ERRORS = frozenset(
    {"greater_than_equal", "finite_number", "float_parsing", "float_type", "value_error"}
)
"""Pydantic's errors for a rate that is no finite number >= 0 (said the same way)."""


def _problems(exc: ValidationError) -> str:
    """A :class:`Price`'s validation errors, one clause each, without the values given."""
    problems = []
    for error in exc.errors():
        where = ".".join(map(str, error["loc"])) or "price"
        if error["type"] == "missing":
            what = "missing"
        elif error["type"] in _NUMBER_ERRORS:
            what = "must be a finite number >= 0"
        else:
            what = error["msg"]
        problems.append(f"{where}: {what}")
    return "; ".join(problems)


_Rate = Callable[[Usage], float]
"""How one model's calls are priced, once its price is found."""
_FREE: _Rate = lambda usage: 0.0  # noqa: E731


class Prices:
    """Prices by model: overrides first, then free local models, then the bundled price data.

    One per engine; what it looked up is kept (a lookup is made once per model).

    Args:
        overrides: Prices by model name (``{"gpt-4o-mini": Price(...)}``); a plain
            mapping with the fields of :class:`Price` is taken too.

    Raises:
        ConfigurationError: An override is not a price.
    """

    def __init__(self, overrides: Mapping[str, Price | Mapping[str, Any]] | None = None) -> None:
        self.overrides: dict[str, Price] = {}
        for name, price in (overrides or {}).items():
            try:
                self.overrides[name] = price if isinstance(price, Price) else Price(**price)
            except ConfigurationError as exc:  # says what to write itself
                raise ConfigurationError(f"prices[{name!r}] is not a price: {exc}") from None
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(
                    f"prices[{name!r}] is not a price: {exc}. Write "
                    "Price(input_per_mtok=..., output_per_mtok=...) in US dollars per million "
                    "tokens."
                ) from None
        self._rates: dict[tuple[str, str, str | None, str | None], _Rate | None] = {}
        self._flat: dict[int, tuple[ModelPrice, Price | None]] = {}
        self._warned: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"Prices(overrides={sorted(self.overrides)!r})"

    def cost(
        self,
        provider: str,
        model: str,
        usage: Usage,
        *,
        answered: str | None = None,
        endpoint: str | None = None,
    ) -> float | None:
        """What ``usage`` cost on ``model``, in US dollars; ``None`` when the price is unknown.

        Args:
            provider: The provider's name (``"openai"``, ``"offline"``, ...).
            model: The model as the engine names it (the request's model).
            usage: The call's token counts.
            answered: The model as the server named it in its answer, if it did.
            endpoint: The server's ``host:port`` (``Provider.endpoint``); ``None`` in-process.
        """
        key = (provider, model, answered, endpoint)
        try:
            rate = self._rates[key]
        except KeyError:
            rate = self._rates[key] = self._rate(provider, model, answered, endpoint)
        return None if rate is None else rate(usage)

    def known(self, provider: str, model: str, *, endpoint: str | None = None) -> bool:
        """Whether ``model``'s price is known before a call (by the name it is asked by).

        A price known only under the name a server answers with (a dated snapshot) is
        found after the call; this says nothing (no warning) either way.
        """
        return self._lookup(provider, model, None, endpoint) is not None

    def _lookup(
        self, provider: str, model: str, answered: str | None, endpoint: str | None
    ) -> _Rate | None:
        for name in (answered, model, f"{provider}:{model}"):
            if name is not None and name in self.overrides:
                return self.overrides[name].cost
        if provider in FREE_PROVIDERS:
            return _FREE
        for name in dict.fromkeys((answered, model)):
            if name:
                info = _bundled(provider, name, endpoint)
                if info is not None:
                    return functools.partial(self._bundled_cost, info)
        return None

    def _rate(
        self, provider: str, model: str, answered: str | None, endpoint: str | None
    ) -> _Rate | None:
        rate = self._lookup(provider, model, answered, endpoint)
        if rate is not None:
            return rate
        if (provider, model) not in self._warned:
            self._warned.add((provider, model))
            where = f" at {endpoint}" if endpoint else ""
            logger.warning(
                "No price is known for %s model %r%s: its calls have cost_usd None. "
                "Price it with LLMEngine(prices={%r: Price(input_per_mtok=..., "
                "output_per_mtok=...)}) (US dollars per million tokens).",
                provider,
                model,
                where,
                model,
            )
        return None

    def _bundled_cost(self, info: ModelInfo, usage: Usage) -> float:
        """The cost at the bundled price in force now (a price may change on a date)."""
        model_price = info.get_prices(datetime.now(tz=UTC))
        try:
            flat = self._flat[id(model_price)][1]
        except KeyError:
            flat = _flat(model_price)
            self._flat[id(model_price)] = (model_price, flat)  # kept: its id stays its own
        if flat is not None:
            return flat.cost(usage)
        from genai_prices import Usage as PricedUsage

        counted = PricedUsage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=min(usage.cached_input_tokens, usage.input_tokens),
            output_tokens=usage.output_tokens,
        )
        return float(model_price.calc_price(counted)["total_price"])


def _bundled(provider: str, model: str, endpoint: str | None) -> ModelInfo | None:
    """The model's entry in genai-prices' bundled data, or ``None``.

    A server is named by its URL (``https://api.openai.com``) so that an OpenAI-compatible
    server is priced as what it is; an in-process provider by its name.
    """
    from genai_prices.data_snapshot import get_snapshot

    try:
        if endpoint:
            _, info = get_snapshot().find_provider_model(model, None, None, f"https://{endpoint}")
        else:
            _, info = get_snapshot().find_provider_model(model, None, provider, None)
    except LookupError:
        return None
    return info


def _flat(model_price: ModelPrice) -> Price | None:
    """The price as three plain rates, when it is that simple (no tiers by prompt length)."""
    from decimal import Decimal

    given, taken, cached = (
        model_price.input_mtok,
        model_price.output_mtok,
        model_price.cache_read_mtok,
    )
    if not (isinstance(given, Decimal) and isinstance(taken, Decimal)):
        return None  # tiered by prompt length, or not priced by tokens
    if cached is not None and not isinstance(cached, Decimal):
        return None
    return Price(
        input_per_mtok=float(given),
        output_per_mtok=float(taken),
        cached_input_per_mtok=None if cached is None else float(cached),
    )
