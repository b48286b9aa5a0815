"""The cache step: answers a request seen before (placeholder: the cache helper's)."""

from __future__ import annotations

from llmgine.llm.cache import LLMCache
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider

__all__ = ["Cached"]


class Cached(WrapperProvider):
    """Answers from ``cache`` when it can, else asks ``inner`` and keeps a good answer."""

    def __init__(self, inner: Provider, cache: LLMCache) -> None:
        super().__init__(inner)
        self.cache = cache
