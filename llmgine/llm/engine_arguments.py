"""The checks of ``LLMEngine``'s arguments: each wrong one a ``ConfigurationError`` naming it."""

from __future__ import annotations

import math

from llmgine.errors import ConfigurationError
from llmgine.llm.providers.base import Provider

__all__ = ["check_counts", "check_timeout", "model_for"]


def check_counts(
    max_tool_rounds: object,
    max_output_retries: object,
    max_history: object,
    max_context_tokens: object,
) -> None:
    """Refuse counts that are not whole numbers in range (``nan``, ``2.5``, ``True``, ``"4000"``).

    Raises:
        ConfigurationError: One is not; the message names it.
    """
    _check_whole("max_tool_rounds", max_tool_rounds, 0)
    _check_whole("max_output_retries", max_output_retries, 0)
    _check_whole("max_history", max_history, 1)
    if max_context_tokens is not None:
        _check_whole("max_context_tokens", max_context_tokens, 1, " (or None)")


def check_timeout(timeout: object) -> None:
    """Refuse a timeout that is not a finite number of seconds above 0, or ``None``.

    Raises:
        ConfigurationError: ``timeout`` is 0 or less, ``nan``, ``inf``, a bool or a string.
    """
    if timeout is None:
        return
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigurationError(
            f"timeout must be a finite number of seconds more than 0 (or None for no limit); "
            f"got {timeout!r}."
        )


def model_for(provider: object, model: object) -> str | None:
    """The model ``provider`` should run for ``model=`` (``None``: its own), both checked.

    ``"openai:gpt-4o-mini"`` with an ``OpenAIProvider`` is ``"gpt-4o-mini"``: the
    prefix the model strings elsewhere need names the provider given.

    Raises:
        ConfigurationError: ``provider`` is not a :class:`Provider` (a model string goes
            in ``model=``), ``model`` is not a string (a provider goes in ``provider=``),
            or names no model.
    """
    if provider is not None and not isinstance(provider, Provider):
        raise ConfigurationError(
            f"provider= takes a Provider (e.g. OpenAIProvider(...)); got {type(provider).__name__}"
            + (
                f": for a model string write model={provider!r}."
                if isinstance(provider, str)
                else "."
            )
        )
    if model is None:
        return None
    if not isinstance(model, str):
        hint = " (a provider goes in provider=)" if isinstance(model, Provider) else ""
        raise ConfigurationError(
            f'model= takes a model string such as "offline" or "openai:gpt-4o-mini"{hint}; '
            f"got {type(model).__name__}."
        )
    if provider is None:
        return model
    kind, colon, name = model.partition(":")
    if colon and kind.strip().lower() == provider.name:
        model = name
    if not model.strip():
        raise ConfigurationError(
            f"model= names no model for the {provider.name} provider; give one, e.g. "
            f'model="{provider.model}", or leave it out to keep the provider\'s.'
        )
    return model.strip()


def _check_whole(name: str, value: object, least: int, alternative: str = "") -> None:
    """Refuse ``value`` unless it is a whole number (an ``int``, not a bool) of ``least`` or more.

    Raises:
        ConfigurationError: ``value`` is a float (``2.5``, ``nan``, ``inf``), a bool, a
            string or an int below ``least``; the message names the argument.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigurationError(
            f"{name} must be a whole number of {least} or more{alternative}; got {value!r}."
        )
