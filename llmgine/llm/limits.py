"""Rate limits per model: requests and tokens per minute, calls at once.

A limit is a bucket that refills at its rate: a call takes what it needs
(one request, its estimated input tokens) and waits until the bucket would have held
it. Taking is a reservation (the bucket may go below zero), so callers are served in
the order they asked and none waits longer than its share. Room for the answer is
taken as debt without waiting (an idle limiter sends at once a call that fits in a
minute, however small the burst), so the next caller waits for it; after the call,
the real token count corrects the estimate and gives back what the answer did not
use. With the bus connected to Redis the buckets live there, in one Lua script, so
every process of the namespace shares them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmgine.errors import ConfigurationError, RateLimitWaitError
from llmgine.llm.shared import connected_store

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus

__all__ = ["LimitSetting", "Limiter", "RateLimits", "limits_for"]


@dataclass(frozen=True, slots=True)
class RateLimits:
    """How much one model may be asked (``LLMEngine(limits=...)``); calls wait for room.

    Args:
        requests_per_minute: Requests sent per minute, at most.
        tokens_per_minute: Input and output tokens per minute, at most (estimated
            before a call, corrected by the server's count after).
        concurrency: Calls at once in this process (in each event loop it is used
            from), at most. A call waits for a free slot at most half its prompt's
            time left (``RateLimitWaitError`` then, so a fallback model answers).
        burst_seconds: How many seconds' worth of the rate may go at once after a
            quiet spell (at least one request).
        output_tokens: The answer's tokens counted before a call without ``max_tokens``
            (with it, ``max_tokens`` are), so calls at once cannot overrun
            ``tokens_per_minute``. The call itself waits only for its input: the answer's
            room is taken as debt the next call waits for, and the server's count after
            the call gives back what the answer did not use.
    """

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    concurrency: int | None = None
    burst_seconds: float = 1.0
    output_tokens: int = 512

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute", "concurrency"):
            value = getattr(self, name)
            if value is not None and not 0 < value < math.inf:
                raise ConfigurationError(
                    f"RateLimits({name}=...) must be more than 0; got {value}."
                )
        if not 0 < self.burst_seconds < math.inf:
            raise ConfigurationError(
                f"RateLimits(burst_seconds=...) must be more than 0; got {self.burst_seconds}."
            )
        if isinstance(self.output_tokens, bool) or not (
            isinstance(self.output_tokens, int) and self.output_tokens >= 0
        ):
            raise ConfigurationError(
                f"RateLimits(output_tokens=...) must be a whole number, 0 or more; "
                f"got {self.output_tokens!r}."
            )
        if (self.requests_per_minute, self.tokens_per_minute, self.concurrency) == (None,) * 3:
            raise ConfigurationError(
                "RateLimits needs a limit: requests_per_minute, tokens_per_minute or concurrency."
            )

    def capacity(self, per_minute: float) -> float:
        """The bucket's size for a rate: ``burst_seconds`` of it, at least 1."""
        return max(per_minute / 60.0 * self.burst_seconds, 1.0)


LimitSetting = RateLimits | Mapping[str, RateLimits] | None
"""``LLMEngine(limits=...)``: one ``RateLimits`` for every model (each its own buckets), or
one per model string (``"openai:gpt-4o-mini"``) or model name (``"gpt-4o-mini"``)."""

# KEYS[1]: the bucket hash. ARGV: rate per ms, capacity, amount, debt (taken after the wait
# is counted: the next caller waits for it). Returns the wait in ms for the amount.
# Redis's own clock: every process reads the same time.
_TAKE = """
local now_s = redis.call('TIME')
local now = tonumber(now_s[1]) * 1000 + tonumber(now_s[2]) / 1000
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local debt = tonumber(ARGV[4]) or 0
local state = redis.call('HMGET', KEYS[1], 'level', 'stamp')
local level = tonumber(state[1])
local stamp = tonumber(state[2])
if level == nil then level = capacity; stamp = now end
level = math.min(capacity, math.min(capacity, level + (now - stamp) * rate) - amount)
local wait = 0
if level < 0 then wait = -level / rate end
level = level - debt
redis.call('HSET', KEYS[1], 'level', tostring(level), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - level) / rate) + 60000)
return tostring(wait)
"""


class _Bucket:
    """A bucket in this process."""

    def __init__(self, per_minute: float, capacity: float) -> None:
        self.rate = per_minute / 60_000.0  # per ms
        self.capacity = capacity
        self.level = capacity
        self.stamp = time.monotonic() * 1000.0

    def take(self, amount: float, debt: float = 0.0) -> float:
        """Reserve ``amount`` and then ``debt``; return the ms to wait until ``amount`` is there.

        ``debt`` does not lengthen this wait (it may take the level below zero): the
        next caller waits for it.
        """
        now = time.monotonic() * 1000.0
        refilled = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        level = min(self.capacity, refilled - amount)  # a give-back never overfills
        self.level = level - debt
        self.stamp = now
        return 0.0 if level >= 0 else -level / self.rate


class Limiter:
    """The buckets of one model's ``RateLimits``, here or in the shared bus's Redis.

    Args:
        limits: The model's limits.
        model: The model string, for the Redis keys.
        bus: The engine's bus: while it is connected to Redis, the buckets are shared.
    """

    def __init__(self, limits: RateLimits, model: str, bus: MessageBus) -> None:
        self.limits = limits
        self.model = model
        self.bus = bus
        self._local: dict[str, _Bucket] = {}
        self._rates: dict[str, float] = {}
        if limits.requests_per_minute is not None:
            self._rates["requests"] = limits.requests_per_minute
        if limits.tokens_per_minute is not None:
            self._rates["tokens"] = limits.tokens_per_minute
        self._calls: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._calls = weakref.WeakKeyDictionary()

    @property
    def calls(self) -> asyncio.Semaphore | None:
        """The concurrency limit of the running event loop's calls (``None``: no limit).

        One per loop, made when the loop first asks: an engine used from
        ``asyncio.run(...)`` and then from a synchronous helper's own loop keeps its
        limit in each (an asyncio semaphore belongs to one loop).
        """
        if self.limits.concurrency is None:
            return None
        loop = asyncio.get_running_loop()
        calls = self._calls.get(loop)
        if calls is None:
            calls = self._calls[loop] = asyncio.Semaphore(self.limits.concurrency)
        return calls

    def check(self, tokens: int, max_tokens: int | None = None) -> None:
        """Refuse a request that no minute could hold.

        Args:
            tokens: The request's input tokens (estimated).
            max_tokens: The most its answer may use, if the request says.

        Raises:
            ConfigurationError: ``tokens`` (and ``max_tokens``) are more than
                ``tokens_per_minute``.
        """
        limit = self.limits.tokens_per_minute
        if limit is not None and max_tokens is not None and tokens + max_tokens > limit:
            raise ConfigurationError(
                f"This request to {self.model} is about {tokens:,} tokens and may be answered "
                f"in max_tokens={max_tokens} more, more than its RateLimits(tokens_per_minute="
                f"{limit:g}) allow in a minute: it could never be sent. Raise "
                "tokens_per_minute, or lower max_tokens."
            )
        if limit is not None and tokens > limit:
            raise ConfigurationError(
                f"This request to {self.model} is about {tokens:,} tokens, more than its "
                f"RateLimits(tokens_per_minute={limit:g}) allow in a minute: it could never be "
                "sent. Raise tokens_per_minute, or send less (max_context_tokens= trims a "
                "conversation)."
            )

    async def wait_for_room(
        self, tokens: int, timeout: float | None = None, *, answer: int = 0
    ) -> float:
        """Reserve one request and ``tokens`` tokens; wait until they are there.

        Room for the answer (``answer`` tokens) is taken too, as debt: it does not
        lengthen this wait (an idle limiter sends a call that fits in a minute at
        once), but the next caller waits for it, so calls at once cannot overrun
        ``tokens_per_minute``. After the call, :meth:`correct` gives back what the
        answer did not use.

        Returns the seconds waited (0.0 when there was room). A wait cancelled (a
        prompt's timeout, a stop) gives its reservation back. The concurrency limit
        is :meth:`slot`, held by the caller around the call.

        Raises:
            RateLimitWaitError: The wait would be longer than ``timeout`` (the prompt's
                time left): the reservation is given back at once instead of waited.
        """
        amounts = {"requests": (1.0, 0.0), "tokens": (float(tokens), float(answer))}
        waits = {kind: await self._take(kind, *amounts[kind]) for kind in self._rates}
        wait = max(waits.values(), default=0.0) / 1000.0
        if timeout is not None and wait > timeout:
            await self.give_back(tokens + answer, request=True)
            raise RateLimitWaitError(self._too_long(waits, wait, timeout), retry_after=wait)
        if wait > 0:
            try:
                await asyncio.sleep(wait)
            except BaseException:
                await self.give_back(tokens + answer, request=True)
                raise
        return wait

    @contextlib.asynccontextmanager
    async def slot(self, timeout: float | None = None) -> AsyncIterator[None]:
        """Hold one of the ``concurrency`` calls at once (nothing without that limit).

        A call waits for a slot at most half the prompt's time left, so it keeps the
        other half to be answered in (a call given its slot as the prompt ends could
        not be), or a fallback model to answer instead.

        Args:
            timeout: The prompt's time left (``None``: no timeout, wait as long as it takes).

        Raises:
            RateLimitWaitError: No slot came free within half of ``timeout``: nothing was
                sent, so a fallback model can answer.
        """
        calls = self.calls
        if calls is None:
            yield
            return
        if calls.locked() and timeout is not None:
            try:
                await asyncio.wait_for(calls.acquire(), max(timeout, 0.0) / 2)
            except TimeoutError:
                raise RateLimitWaitError(
                    f"{self.model} had no free slot under its RateLimits(concurrency="
                    f"{self.limits.concurrency}) on the LLMEngine in half the prompt's "
                    f"time left ({max(timeout, 0.0):.3g} s; the other half is kept for the "
                    "answer): nothing was sent. Allow more time with timeout=... on the "
                    "prompt or the LLMEngine, raise the limit, or give fallback=[...] "
                    "models to answer instead."
                ) from None
        else:
            await calls.acquire()
        try:
            yield
        finally:
            calls.release()

    def _too_long(self, waits: dict[str, float], wait: float, timeout: float) -> str:
        setting = f"{max(waits, key=waits.__getitem__)}_per_minute"  # the longest wait's
        limit = getattr(self.limits, setting)
        return (
            f"{self.model} would wait {wait:.3g} s for room under its RateLimits({setting}="
            f"{limit:g}) on the LLMEngine, past the prompt's timeout ({timeout:.3g} s left): "
            "nothing was sent. Allow more time with timeout=... on the prompt or the "
            "LLMEngine, raise the limit, or give fallback=[...] models to answer instead."
        )

    async def give_back(self, tokens: int, *, request: bool) -> None:
        """Return what a call took and did not use: its tokens, and its request if unsent."""
        if request and "requests" in self._rates:
            await self._take("requests", -1.0)
        if tokens and "tokens" in self._rates:
            await self._take("tokens", -float(tokens))

    async def correct(self, estimated: int, actual: int) -> None:
        """Count ``actual`` tokens instead of the ``estimated`` ones taken before the call."""
        if "tokens" in self._rates and actual != estimated:
            await self._take("tokens", float(actual - estimated))

    async def _take(self, kind: str, amount: float, debt: float = 0.0) -> float:
        per_minute = self._rates[kind]
        capacity = self.limits.capacity(per_minute)
        store = connected_store(self.bus, "limits")
        if store is None:
            bucket = self._local.get(kind)
            if bucket is None:
                bucket = self._local[kind] = _Bucket(per_minute, capacity)
            return bucket.take(amount, debt)
        reply: Any = await store.redis.eval(
            _TAKE, 1, store.key(self.model, kind), per_minute / 60_000.0, capacity, amount, debt
        )
        return float(reply)


def limits_for(setting: LimitSetting, model_string: str, model: str) -> RateLimits | None:
    """The limits of one model under an ``LLMEngine(limits=...)`` setting."""
    if setting is None or isinstance(setting, RateLimits):
        return setting
    return setting.get(model_string) or setting.get(model)
