"""The LLM call cache: a request seen before is answered without calling the model.

:class:`LLMCache` is the facade the engine's ``Cached`` step uses; the answers live in a
store (:class:`SQLiteStore`, a file; :class:`RedisStore`, the shared bus's Redis) under
the request's key (:func:`request_key`). :func:`open_cache` reads ``LLMEngine(cache=...)``.
"""

from __future__ import annotations

from llmgine.llm.cache.cache import LLMCache, as_hit
from llmgine.llm.cache.key import request_key
from llmgine.llm.cache.paths import default_cache_dir
from llmgine.llm.cache.redis_store import RedisStore
from llmgine.llm.cache.settings import open_cache
from llmgine.llm.cache.sqlite_store import SQLiteStore
from llmgine.llm.cache.store import CacheStats, CacheStore, StoreSize

__all__ = [
    "CacheStats",
    "CacheStore",
    "LLMCache",
    "RedisStore",
    "SQLiteStore",
    "StoreSize",
    "as_hit",
    "default_cache_dir",
    "open_cache",
    "request_key",
]
