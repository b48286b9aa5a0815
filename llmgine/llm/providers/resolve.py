"""Model strings: ``"offline"``, ``"scripted"``, ``"openai:<model>"``, ``"local"``, ``"replay:…"``.

``"local:<model.gguf>"`` runs another GGUF file in-process; ``"replay:<log.jsonl>"`` a recording.
"""

from __future__ import annotations

import os

from llmgine.errors import ConfigurationError
from llmgine.llm.providers.base import Provider

__all__ = ["default_model", "provider_for"]

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"


def default_model() -> str:
    """The model string used when none is given.

    ``LLMGINE_MODEL`` if set, else ``"openai:gpt-4o-mini"`` when ``OPENAI_API_KEY``
    is set, else ``"offline"``.
    """
    configured = os.environ.get("LLMGINE_MODEL", "").strip()
    if configured:
        return configured
    if os.environ.get("OPENAI_API_KEY"):
        return f"openai:{DEFAULT_OPENAI_MODEL}"
    return "offline"


def provider_for(model: str | None = None) -> Provider:
    """Return a new provider for a model string (``None`` means :func:`default_model`).

    Raises:
        ConfigurationError: The string names no known provider (the message lists them).
        MissingAPIKeyError: ``openai:`` without ``OPENAI_API_KEY``.
    """
    spec = (model or default_model()).strip()
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if kind == "offline":
        from llmgine.llm.providers.offline import OfflineProvider

        return OfflineProvider(rest or "offline")
    if kind == "scripted":
        from llmgine.llm.providers.scripted import ScriptedProvider

        return ScriptedProvider(model=rest or "scripted")
    if kind == "openai":
        from llmgine.llm.providers.openai import OpenAIProvider

        return OpenAIProvider(rest or DEFAULT_OPENAI_MODEL)
    if kind == "local":
        from llmgine.llm.providers.local import LocalProvider

        return LocalProvider(rest or None)
    if kind == "replay":
        from llmgine.llm.providers.replay import ReplayProvider

        if not rest:
            raise ConfigurationError('replay needs a log file: "replay:logs/session.jsonl".')
        return ReplayProvider(rest)
    raise ConfigurationError(
        f'Unknown model {spec!r}. Use one of: "offline", "scripted", '
        f'"openai:<model>" (e.g. "openai:{DEFAULT_OPENAI_MODEL}"), "local", '
        '"local:<model.gguf>", "replay:<log.jsonl>".'
    )
