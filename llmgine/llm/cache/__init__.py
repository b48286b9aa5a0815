"""The LLM call cache (placeholder: the cache helper replaces this package)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus

__all__ = ["LLMCache", "open_cache"]


class LLMCache:
    """Answers requests seen before."""


def open_cache(setting: Any, bus: MessageBus) -> LLMCache | None:
    """The cache an ``LLMEngine(cache=...)`` setting names, or ``None``."""
    if setting is None or setting is False:
        return None
    if isinstance(setting, LLMCache):
        return setting
    raise NotImplementedError("the call cache is being built")
