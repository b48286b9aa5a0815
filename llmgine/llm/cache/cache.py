"""The LLM call cache: answers a request seen before instead of calling the model again."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from pydantic import ValidationError

from llmgine.errors import CacheError, ConfigurationError
from llmgine.llm.cache.key import request_key
from llmgine.llm.cache.known_misses import KnownMisses
from llmgine.llm.cache.paths import cache_file
from llmgine.llm.cache.recent import RecentAnswers
from llmgine.llm.cache.redis_store import RedisStore
from llmgine.llm.cache.single_flight import SingleFlight, Turn
from llmgine.llm.cache.sqlite_store import SQLiteStore
from llmgine.llm.cache.store import CacheStats, CacheStore, StoreSize
from llmgine.llm.cache.write_behind import WritesBehind, writes_behind
from llmgine.llm.types import Completion, LLMRequest

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus

__all__ = ["LLMCache", "Serving", "as_hit"]

logger = logging.getLogger(__name__)


def as_hit(stored: Completion) -> Completion:
    """A stored answer as a hit: ``cached=True``, cost 0, what it saved in ``cost_saved_usd``.

    The token counts stay: they say what the answer was, not what this call used.
    """
    # The caller may change what it gets (usage, the lists); what is kept stays. A copy
    # of those, not a deep copy of the whole answer: a hit is on a batch's hot path.
    hit = stored.model_copy(
        update={
            "usage": stored.usage.model_copy(),
            "tool_calls": [call.model_copy(deep=True) for call in stored.tool_calls],
            "fallback_from": list(stored.fallback_from),
        }
    )
    hit.usage.cost_usd = 0.0
    hit.cached = True
    hit.cost_saved_usd = stored.usage.cost_usd
    return hit


def _hit(text: str) -> Completion:
    """A kept answer's JSON text as a hit: a new object, as :func:`as_hit` makes it.

    Reading the text again is cheaper than copying a stored answer, and the hit shares
    nothing with what is kept: a batch's cached re-run reads one per row.
    """
    hit = Completion.model_validate_json(text)
    hit.cost_saved_usd = hit.usage.cost_usd
    hit.usage.cost_usd = 0.0
    hit.cached = True
    return hit


class Serving:
    """One ``async with cache.serve(key) as hit:`` block.

    A class rather than an ``asynccontextmanager``: it runs for every cached call, and
    an async generator per call costs more than the rest of a hit's bookkeeping.
    """

    __slots__ = ("_cache", "_key", "_turn", "_usable")

    def __init__(
        self, cache: LLMCache, key: str, usable: Callable[[Completion], bool] | None = None
    ) -> None:
        self._cache = cache
        self._key = key
        self._turn: Turn | None = None
        self._usable = usable

    async def __aenter__(self) -> Completion | None:
        cache, key = self._cache, self._key
        hit = self._if_usable(await cache._lookup(key))
        if hit is not None:
            return hit
        turn = cache.flights.turn(key)
        waited = await turn.__aenter__()
        self._turn = turn  # held from here: __aexit__ gives it back
        try:
            if waited:  # the other request's answer, kept meanwhile
                hit = self._if_usable(await cache._lookup(key))
            else:  # one kept in this process while the store was read (its turn is over)
                hit = self._if_usable(cache._remembered(key))
        except BaseException:
            self._turn = None
            await turn.__aexit__(None, None, None)
            raise
        if hit is None:
            cache.misses += 1
        return hit

    def _if_usable(self, hit: Completion | None) -> Completion | None:
        """``hit``, unless the caller cannot use it: then no hit (nor counted as one)."""
        if hit is None or self._usable is None or self._usable(hit):
            return hit
        self._cache.hits -= 1
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        turn, self._turn = self._turn, None
        if turn is not None:
            await turn.__aexit__(exc_type, exc, tb)


class LLMCache:
    """Answers requests seen before, from a SQLite file or the shared bus's Redis.

    ``LLMEngine(bus, cache=True)`` uses the default file (``calls.sqlite3`` in
    ``$LLMGINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/llmgine``, else ``~/.cache/llmgine``);
    ``cache="answers.sqlite3"`` a file of your own; ``cache=LLMCache(...)`` this object
    (shared by engines, closed by you). The key is the request as the provider would send
    it (provider, model, server, messages, tools, options, output schema), never the API
    key. Only completed answers are kept, and for a prompt with an ``output_type`` only
    one that validates (a prompt that failed asks the model again when run again);
    identical concurrent requests make one call.

    A file cache also keeps the answers it used last in memory (``recent``), so a
    repeated hit in this process skips the file. A ``clear()`` of the file by any
    ``LLMCache`` in this process empties the memory of every one on that file (the
    engine's default cache included); one made by another process reaches this one as
    the answers drop out. The shared Redis cache keeps none.

    Args:
        path: The SQLite file, or a folder for its ``calls.sqlite3`` (one that exists, or
            a path ending with ``/``); ``None``: the default.
        store: Another place for the answers (a :class:`CacheStore`) instead of a file.
        recent: How many answers to keep in memory as well (0: none), within 64 MB of
            memory for their text: a re-run of a batch of up to this many rows skips
            the file.

    Example:
        >>> cache = LLMCache("calls.sqlite3")
        >>> engine = LLMEngine(bus, model="openai:gpt-4o-mini", cache=cache)  # doctest: +SKIP
        >>> cache.stats().hits  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        store: CacheStore | None = None,
        recent: int = 10_000,
    ) -> None:
        if store is not None and path is not None:
            raise ConfigurationError("Give LLMCache a path or a store, not both.")
        self.store: CacheStore = store if store is not None else SQLiteStore(cache_file(path))
        file = self.store.path if isinstance(self.store, SQLiteStore) else None
        scope = str(file.resolve()) if file is not None else None
        self.recent = RecentAnswers(recent, scope=scope)
        """The answers used last, in memory (read before the store)."""
        self.hits = 0
        """Calls answered from the cache by this object."""
        self.misses = 0
        """Calls this object let through to the model."""
        self.flights = SingleFlight()
        """Identical requests in flight: one calls, the others wait for its answer."""
        self.known_misses = KnownMisses()
        """Keys :meth:`lookup_many` just found missing: their call's lookup skips the store."""
        self._unwritten: dict[str, str] = {}
        """Answers a batch kept that are on their way to the file (see :meth:`keep`)."""
        self._failing = False

    @classmethod
    def shared(cls, bus: MessageBus) -> LLMCache:
        """The cache in ``bus``'s Redis (``cache="redis"``): every worker's hits are shared.

        The bus must be connected (``await bus.connect(...)``) by the first prompt.
        """
        return cls(store=RedisStore(bus), recent=0)  # a clear anywhere is seen everywhere

    def __repr__(self) -> str:
        return f"LLMCache({self.store.location!r})"

    @property
    def path(self) -> Path | None:
        """The SQLite file; ``None`` when the answers are elsewhere (Redis)."""
        return self.store.path if isinstance(self.store, SQLiteStore) else None

    @staticmethod
    def key(
        request: LLMRequest, *, provider: str, endpoint: str | None, salt: str | None = None
    ) -> str:
        """The key of ``request`` sent by ``provider`` to ``endpoint``: 64 hex digits.

        See :mod:`llmgine.llm.cache.key` for what is part of it.
        """
        return request_key(request, provider=provider, endpoint=endpoint, salt=salt)

    # ------------------------------------------------------------------ serving

    def serve(self, key: str, usable: Callable[[Completion], bool] | None = None) -> Serving:
        """``async with cache.serve(key) as hit:`` the hit for ``key``, or ``None``.

        On ``None``, call the model in the block and :meth:`keep` its answer: the block
        holds ``key``'s turn, so an identical request arriving meanwhile waits for it
        and is then answered from what it kept. A kept answer ``usable`` refuses is no
        hit: the block then holds the turn as for a miss.
        """
        return Serving(self, key, usable)

    async def lookup_many(
        self, keys: Sequence[str], *, remember_misses: bool = True
    ) -> list[Completion | None]:
        """Each key's kept answer as a hit, or ``None``: one read of the store for them all.

        For a batch that looks up its rows before it sends them. Answers in memory are
        not read again. With ``remember_misses``, a key the store does not have is
        remembered as missing for a while (:attr:`known_misses`), so its call, sent
        next, does not read the store again to find nothing. The hits are not counted:
        :meth:`count_hits` those the caller uses.
        """
        texts: list[str | None] = [self.recent.get(key) for key in keys]
        wanted = [key for key, text in zip(keys, texts, strict=True) if text is None]
        found: dict[str, str] = {}
        if wanted:
            found = await self._read_many(wanted)
            if remember_misses:
                self.known_misses.add(key for key in wanted if key not in found)
        hits: list[Completion | None] = []
        for key, text in zip(keys, texts, strict=True):
            if text is None:
                stored = found.get(key)
                hit = None if stored is None else self._read_hit(stored)
                if stored is not None and hit is not None:
                    self.recent.put(key, stored)  # only what reads as an answer
            else:
                hit = _hit(text)  # kept in memory only once it read as one
            hits.append(hit)
        return hits

    def count_hits(self, count: int = 1) -> None:
        """Count ``count`` calls answered from hits :meth:`lookup_many` gave."""
        self.hits += count

    async def _read_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The store's answers to ``keys``; a store that fails is logged and gives none."""
        get_many = getattr(self.store, "get_many", None)  # a store written before it existed
        try:
            if get_many is not None:
                found: dict[str, str] = await get_many(keys)
            else:
                texts = [await self.store.get(key) for key in keys]
                found = {k: t for k, t in zip(keys, texts, strict=True) if t is not None}
        except ConfigurationError:
            raise
        except Exception:
            self._trouble("could not be read; the model is asked instead")
            return {}
        self._recovered()
        return found

    def _read_hit(self, text: str) -> Completion | None:
        try:
            return _hit(text)
        except ValidationError:
            logger.warning(
                "A cached answer in %s does not read as an answer (written by another "
                "llmgine version?); the model is asked again and its answer replaces it.",
                self.store.location,
                exc_info=True,
            )
            return None

    def _remembered(self, key: str) -> Completion | None:
        """The hit for ``key`` from the answers in memory, counted; or ``None``."""
        text = self.recent.get(key) or self._unwritten.get(key)
        if text is None:
            return None
        self.hits += 1
        return _hit(text)

    async def _lookup(self, key: str) -> Completion | None:
        hit = self._remembered(key)
        if hit is not None:
            return hit
        if self.known_misses.take(key):
            return None  # a batch read just found it missing
        try:
            text = await self.store.get(key)
        except ConfigurationError:
            raise  # a setting to fix (another program's file, a bus not connected)
        except Exception:
            self._trouble("could not be read; the model is asked instead")
            return None
        self._recovered()
        if text is None:
            return None
        hit = self._read_hit(text)
        if hit is None:
            return None
        self.recent.put(key, text)
        self.hits += 1
        return hit

    async def keep(self, key: str, completion: Completion, *, provider: str, model: str) -> None:
        """Store a completed answer under ``key``; a store that fails is logged, not raised.

        In a batch's rows (:mod:`~llmgine.llm.cache.write_behind`) a file cache queues the
        answer and returns at once: the batch waits for its writes at its end.
        """
        text = completion.model_dump_json()
        behind = writes_behind()
        if behind is not None and isinstance(self.store, SQLiteStore):
            await self._keep_behind(behind, self.store, key, text, provider=provider, model=model)
            return
        try:
            await self.store.put(key, text, provider=provider, model=model)
        except Exception:
            self._trouble("could not keep an answer; the call itself succeeded")
            return
        self.recent.put(key, text)
        self.known_misses.discard(key)
        self._recovered()

    async def _keep_behind(
        self,
        behind: WritesBehind,
        store: SQLiteStore,
        key: str,
        text: str,
        *,
        provider: str,
        model: str,
    ) -> None:
        """Queue the answer for the file; usable here at once, forgotten if the write fails."""
        try:
            written = store.put_soon(key, text, provider=provider, model=model)
        except Exception:
            self._trouble("could not keep an answer; the call itself succeeded")
            return
        self._unwritten[key] = text  # identical requests find it here, whatever recent keeps
        self.recent.put(key, text)
        self.known_misses.discard(key)

        def settled(written: asyncio.Future[None]) -> None:
            if self._unwritten.get(key) is text:
                del self._unwritten[key]
            error = None if written.cancelled() else written.exception()
            if error is None:
                self._recovered()
                return
            if self.recent.get(key) == text:  # what memory holds must be in the file
                self.recent.discard(key)
            self._trouble("could not keep an answer; the call itself succeeded", error)

        written.add_done_callback(settled)
        await behind.add(written)

    def _trouble(self, what: str, error: BaseException | None = None) -> None:
        """Log a failing store once with its traceback, then quietly until it recovers."""
        log = logger.debug if self._failing else logger.warning
        log("The call cache %s %s.", self.store.location, what, exc_info=error or True)
        self._failing = True

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            logger.info("The call cache %s works again.", self.store.location)

    # ------------------------------------------------------------------ looking after it

    def _stats(self, size: StoreSize) -> CacheStats:
        return CacheStats(
            hits=self.hits,
            misses=self.misses,
            entries=size.entries,
            size_bytes=size.size_bytes,
            path=self.path,
            location=self.store.location,
        )

    def _file(self, what: str) -> SQLiteStore:
        if not isinstance(self.store, SQLiteStore):
            raise CacheError(
                f"cache.{what}() waits here, which only a file cache can; the cache in "
                f"{self.store.location} is asked with `await cache.a{what}()`."
            )
        return self.store

    def stats(self) -> CacheStats:
        """Hits and misses of this object; entries and bytes of the file (sync).

        Safe in a notebook cell: the file is read on the cache's own thread. A Redis
        cache raises :class:`~llmgine.errors.CacheError`: use :meth:`astats` there.
        """
        return self._stats(self._file("stats").size_blocking())

    async def astats(self) -> CacheStats:
        """:meth:`stats` for any store (a file or Redis), from async code."""
        return self._stats(await self.store.size())

    def clear(self) -> int:
        """Remove every cached answer (sync); return how many there were.

        A Redis cache raises :class:`~llmgine.errors.CacheError`: use :meth:`aclear` there.
        """
        store = self._file("clear")
        self.recent.clear()
        self._unwritten.clear()
        try:
            return store.clear_blocking()
        finally:
            self.recent.clear()  # and what was read from the file meanwhile

    async def aclear(self) -> int:
        """:meth:`clear` for any store, from async code."""
        self.recent.clear()
        self._unwritten.clear()
        try:
            return await self.store.clear()
        finally:
            self.recent.clear()  # and what was read from the file meanwhile

    async def aclose(self) -> None:
        """Close the file and its thread; the cache opens them again when used."""
        await self.store.aclose()

    def close(self) -> None:
        """:meth:`aclose` from synchronous code (a file cache; nothing to do for Redis)."""
        if isinstance(self.store, SQLiteStore):
            self.store.close()
