"""Spending limits: ``LLMEngine(budget=Budget(usd=..., tokens=..., per=...))``.

A call that would start once its budget is spent fails before anything is sent, with
:class:`~llmgine.errors.BudgetExceededError` (the prompt's ``CommandResult`` is failed).
The spend is counted after each call: its ``cost_usd`` and its tokens (a cache hit
spends nothing). A dollar budget fails closed on a model whose price is unknown: the
call is refused before it is sent (``ConfigurationError`` naming the model: price it
with ``LLMEngine(prices=...)`` or budget tokens instead); a token budget counts the
tokens of such calls. Calls already under way finish: concurrent calls can overspend
by at most what they cost.

Where the spend is kept: in the engine while its bus is local; in the shared bus's
Redis once it is connected (``bus.connect(...)``), one counter per namespace
(``{namespace}:spend:engine``, ``...:conversation:<id>``, ``...:command:<id>``), so
every worker of the namespace counts against the same budget.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from llmgine.errors import BudgetExceededError, ConfigurationError, SharedBusConnectionError
from llmgine.llm.shared import SharedStore, shared_store
from llmgine.llm.spend import Spend
from llmgine.llm.types import Completion

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus
    from llmgine.llm.commands import PromptCommand

__all__ = ["Budget", "BudgetKeeper", "Spend"]

logger = logging.getLogger(__name__)

Per = Literal["engine", "conversation", "command"]

_MAX_LOCAL_SCOPES = 10_000
"""Per-command and per-conversation counters kept in the engine (the oldest go first)."""
_COMMAND_TTL = 24 * 3600
"""Seconds a per-command counter lives in Redis (a prompt is long over by then)."""
_CONVERSATION_TTL = 30 * 24 * 3600
"""Seconds a per-conversation counter lives in Redis after its last call."""


class Budget(BaseModel):
    """A spending limit in US dollars and/or tokens, per engine, conversation or command.

    Args:
        usd: Dollars that may be spent (``usage.cost_usd`` of the calls).
        tokens: Input and output tokens that may be spent.
        per: What one budget covers: the whole ``"engine"`` (over Redis: every worker
            of the namespace), each ``"conversation"``, or each ``"command"`` (one
            prompt, with its tool rounds and retries).

    Raises:
        ConfigurationError: No limit is given, or a limit is not a positive number
            (``True``, ``nan`` and ``inf`` are none).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    tokens: int | None = Field(default=None, gt=0)
    per: Per = "engine"

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'limits'}: "
                + e["msg"].removeprefix("Value error, ")
                for e in exc.errors()
            )
            raise ConfigurationError(
                f"Budget({problems}). Write Budget(usd=0.50) or Budget(tokens=100_000), "
                'with per="engine", "conversation" or "command".'
            ) from None

    @field_validator("usd", "tokens", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # True is 1 to Python, never a limit anyone meant
            raise ValueError(f"give a number, not {value}")
        return value

    @model_validator(mode="after")
    def _has_a_limit(self) -> Budget:
        if self.usd is None and self.tokens is None:
            raise ValueError("give a limit, usd=... and/or tokens=...")
        return self

    def __str__(self) -> str:
        limits = []
        if self.usd is not None:
            limits.append(f"${self.usd:g}")
        if self.tokens is not None:
            limits.append(f"{self.tokens:,} tokens")
        return f"{' and '.join(limits)} per {self.per}"


class _Count:
    """What one scope of a local budget has spent."""

    __slots__ = ("tokens", "usd")

    def __init__(self) -> None:
        self.usd = 0.0
        self.tokens = 0


class BudgetKeeper:
    """Counts each call's spend, and refuses a call once its budget is spent.

    One per engine. Without a budget it only counts (``engine.spend``).

    Args:
        budget: The limit, or ``None`` (count only).
        bus: The engine's bus: once it is connected to Redis, the budget's counters
            are shared by every process of its namespace.
        spend: Where every answered call is counted (``engine.spend``).
    """

    def __init__(self, budget: Budget | None, bus: MessageBus, spend: Spend | None = None) -> None:
        self.budget = budget
        self.bus = bus
        self.spend = spend if spend is not None else Spend()
        self._local: OrderedDict[str, _Count] = OrderedDict()
        self._unpriced_warned: set[str] = set()

    def __repr__(self) -> str:
        return f"BudgetKeeper({self.budget or 'no budget'}, {self.spend!r})"

    def on_bus(self, bus: MessageBus) -> BudgetKeeper:
        """The same budget and what it counted so far, kept for an engine on ``bus``."""
        keeper = BudgetKeeper(self.budget, bus, self.spend)
        keeper._local = self._local
        keeper._unpriced_warned = self._unpriced_warned
        return keeper

    def scope(self, command: PromptCommand) -> str:
        """What the budget counts for ``command``: ``"engine"``, ``"conversation:<id>"``, ..."""
        per = self.budget.per if self.budget is not None else "engine"
        if per == "conversation":
            return f"conversation:{command.conversation_id}"
        if per == "command":
            return f"command:{command.id}"
        return "engine"

    def _store(self) -> SharedStore | None:
        if self.bus.remote is None:
            return None
        return shared_store(self.bus, "spend", "budget")

    async def spent(self, command: PromptCommand) -> tuple[float, int]:
        """Dollars and tokens spent so far in ``command``'s scope (shared over Redis)."""
        scope = self.scope(command)
        store = self._store()
        if store is None:
            count = self._local.get(scope)
            return (count.usd, count.tokens) if count is not None else (0.0, 0)
        from redis.exceptions import RedisError  # connected: the redis extra is there

        try:
            usd, tokens = await store.redis.hmget(store.key(scope), "usd", "tokens")
        except (RedisError, OSError) as exc:
            raise SharedBusConnectionError(
                f"The budget's spend could not be read from the shared bus's Redis "
                f"({type(exc).__name__}: {exc}); the call was not sent. Check that Redis is "
                "up, or run the engine on a bus that is not connected."
            ) from exc
        return float(usd or 0.0), int(tokens or 0)

    async def check(self, command: PromptCommand) -> None:
        """Refuse a call for ``command`` once its budget is spent.

        Raises:
            BudgetExceededError: The budget is spent; nothing may be sent.
            SharedBusConnectionError: Over Redis, the spend could not be read.
        """
        budget = self.budget
        if budget is None:
            return
        usd, tokens = await self.spent(command)
        over_usd = budget.usd is not None and usd >= budget.usd
        over_tokens = budget.tokens is not None and tokens >= budget.tokens
        if not (over_usd or over_tokens):
            return
        scope = self.scope(command)
        where = {
            "engine": "this engine" if self.bus.remote is None else "this namespace",
            "conversation": f"conversation {command.conversation_id!r}",
            "command": "this prompt",
        }[budget.per]
        advice = {
            "engine": "raise it (LLMEngine(budget=Budget(...)))",
            "conversation": "start a new conversation or raise it",
            "command": "raise it",
        }[budget.per]
        raise BudgetExceededError(
            f"The budget of {budget} is spent for {where}: ${usd:.6g} and {tokens:,} tokens "
            f"so far; the call was not sent. To go on, {advice}.",
            budget=budget,
            scope=scope.replace(":", " ", 1),
            spent_usd=usd,
            spent_tokens=tokens,
        )

    async def add(self, command: PromptCommand, model: str, completion: Completion) -> None:
        """Count one answered call of ``command`` (to ``spend``, and to the budget's counter)."""
        usage = completion.usage
        self.spend.record(
            model,
            command.conversation_id,
            usage,
            cached=completion.cached,
            saved_usd=completion.cost_saved_usd,
        )
        budget = self.budget
        if budget is None or completion.cached:
            return
        usd = usage.cost_usd
        if usd is None:
            usd = 0.0
            if budget.usd is not None and model not in self._unpriced_warned:
                self._unpriced_warned.add(model)
                logger.warning(
                    "The budget of %s cannot count the dollars of model %r: its price is "
                    "unknown (cost_usd None), so only its tokens are counted. Price it with "
                    "LLMEngine(prices={%r: Price(...)}).",
                    budget,
                    model,
                    model,
                )
        tokens = usage.input_tokens + usage.output_tokens
        scope = self.scope(command)
        store = self._store()
        if store is None:
            self._count_locally(scope, usd, tokens)
            return
        from redis.exceptions import RedisError

        try:
            await _count_shared(store, scope, usd, tokens)
        except (RedisError, OSError):
            logger.exception(
                "The spend of a call ($%.6g, %d tokens) could not be counted in the shared "
                "bus's Redis; the budget of %s does not include it.",
                usd,
                tokens,
                budget,
            )

    def _count_locally(self, scope: str, usd: float, tokens: int) -> None:
        count = self._local.get(scope)
        if count is None:
            count = self._local[scope] = _Count()
            if len(self._local) > _MAX_LOCAL_SCOPES:
                self._local.popitem(last=False)
        else:
            self._local.move_to_end(scope)
        count.usd += usd
        count.tokens += tokens


async def _count_shared(store: SharedStore, scope: str, usd: float, tokens: int) -> None:
    """Add to the scope's counter in Redis: one atomic round trip (MULTI/EXEC)."""
    key = store.key(scope)
    async with store.redis.pipeline(transaction=True) as pipe:
        if usd:
            pipe.hincrbyfloat(key, "usd", usd)
        pipe.hincrby(key, "tokens", tokens)
        pipe.hincrby(key, "calls", 1)
        if scope.startswith("command:"):
            pipe.expire(key, _COMMAND_TTL)
        elif scope.startswith("conversation:"):
            pipe.expire(key, _CONVERSATION_TTL)
        await pipe.execute()
