"""From an ``LLMEngine(cache=...)`` setting to the cache it names."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from llmgine.errors import ConfigurationError
from llmgine.llm.cache.cache import LLMCache

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus

__all__ = ["open_cache"]


def open_cache(setting: object, bus: MessageBus) -> LLMCache | None:
    """The cache an ``LLMEngine(cache=...)`` setting names, or ``None`` for no cache.

    ``True`` is the default file, ``"redis"`` the shared bus's Redis, another string or
    a path a file (or a folder for its ``calls.sqlite3``), an :class:`LLMCache` itself.
    A cache made here closes its file when ``bus`` stops (it opens again when used);
    an ``LLMCache`` you pass is yours to close.

    Args:
        setting: ``None``/``False``, ``True``, ``"redis"``, a path or an ``LLMCache``.
        bus: The engine's bus.

    Raises:
        ConfigurationError: The setting is none of these.
    """
    if setting is None or setting is False:
        return None
    if isinstance(setting, LLMCache):
        return setting
    if setting == "redis":
        return LLMCache.shared(bus)
    if setting is True:
        cache = LLMCache()
    elif isinstance(setting, str | os.PathLike) and str(setting).strip():
        cache = LLMCache(setting)
    else:
        raise ConfigurationError(
            f"cache= takes True (the default file), a file path, 'redis' (the connected "
            f"bus's Redis), an LLMCache, or None; got {setting!r}."
        )
    bus.on_stop(cache.aclose)
    return cache
