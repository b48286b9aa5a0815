"""One default bus and one default engine per kernel, created on first use."""

from __future__ import annotations

import logging
import weakref
from typing import Any, Protocol

from llmgine.bus.bus import MessageBus
from llmgine.errors import ConfigurationError
from llmgine.llm.engine import LLMEngine
from llmgine.notebook.sync import run_sync

__all__ = ["Runtime", "get_bus", "get_engine", "get_runtime", "set_engine"]

logger = logging.getLogger(__name__)

_ATTRIBUTE = "_llmgine_runtime"
_process_runtime: list[Runtime] = []  # without IPython: one per process, made on first use


class _Follower(Protocol):
    def rebind(self, engine: LLMEngine) -> None: ...


class _BusFollower(Protocol):
    def rebind(self, bus: MessageBus) -> None: ...


def _still_open(followers: weakref.WeakSet[Any]) -> list[Any]:
    """The widgets of ``followers`` still open; a closed one (its comm gone) is dropped.

    A panel the user closed has left its bus: it must not join the next one.
    """
    closed = [widget for widget in followers if getattr(widget, "comm", True) is None]
    for widget in closed:
        followers.discard(widget)
    return list(followers)


class Runtime:
    """The default bus and engine of one kernel (or one IPython shell).

    Widgets made on the default engine follow it: when ``%llmgine start`` replaces
    the bus, they move to the new engine, so their prompts land in the new log.
    Widgets made on the default bus (a monitor, a form) move to the new bus. A
    widget closed (``close()``) stops following.
    """

    def __init__(self) -> None:
        self.bus: MessageBus | None = None
        self.engine: LLMEngine | None = None
        self.bus_options: dict[str, Any] = {"log_dir": "logs"}
        self.conversation_id = "default"
        """The conversation ``%llmgine chat`` and new chat panels continue
        (``%llmgine conversations use ID``)."""
        self._followers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._bus_followers: weakref.WeakSet[Any] = weakref.WeakSet()

    def get_bus(self) -> MessageBus:
        """The default bus, created and started on the kernel's loop on first use."""
        if self.bus is None:
            self.bus = MessageBus(**self.bus_options)
        if not self.bus.is_running:
            run_sync(self.bus.start())
        return self.bus

    def get_engine(self) -> LLMEngine:
        """The default engine on the default bus (default model), created on first use.

        When the bus was replaced, the new engine keeps the old one's settings (model,
        tools, system prompt, timeouts, prices, call cache, budget and what it spent,
        conversations, retries, rate limits, fallback models).
        """
        bus = self.get_bus()
        old = self.engine
        if old is None:
            engine = self.engine = LLMEngine(bus)
        elif old.bus is not bus:
            engine = self.engine = _same_engine_on(old, bus)
            for follower in _still_open(self._followers):
                follower.rebind(engine)
        else:
            engine = old
        return engine

    def set_engine(self, engine: LLMEngine) -> None:
        """Make ``engine`` (and its bus) the default: the one the magics and panels use.

        The default bus before, if another, is stopped (as ``%llmgine start`` replaces it).
        """
        previous = self.bus
        if previous is not None and previous is not engine.bus and previous.is_running:
            run_sync(previous.stop())
        self.bus = engine.bus
        self.engine = engine
        for follower in _still_open(self._followers):
            follower.rebind(engine)
        self._move_bus_followers(engine.bus)

    def follow(self, widget: _Follower) -> None:
        """Move ``widget`` (its ``rebind(engine)``) to each new default engine."""
        self._followers.add(widget)

    def follow_bus(self, widget: _BusFollower) -> None:
        """Move ``widget`` (its ``rebind(bus)``) to each new default bus."""
        self._bus_followers.add(widget)

    def _move_bus_followers(self, bus: MessageBus) -> None:
        for follower in _still_open(self._bus_followers):
            if follower.bus is not bus:
                follower.rebind(bus)

    def replace_bus(self, **options: Any) -> MessageBus:
        """Stop the current default bus and start a new one with ``options``.

        Raises:
            ConfigurationError: The new bus could not start (say, its log cannot be
                written); the previous bus and settings are kept (it runs again if it ran).
        """
        previous, old = self.bus_options, self.bus
        was_running = old is not None and old.is_running
        if old is not None:
            run_sync(old.stop())
        self.bus_options = {"log_dir": "logs", **options}
        self.bus = None
        try:
            bus = self.get_bus()
        except Exception as exc:
            # The previous bus comes back as it was: running again if it ran.
            self.bus_options, self.bus = previous, old
            if old is not None and was_running:
                try:
                    run_sync(old.start())
                except Exception:
                    logger.warning("the previous bus did not start again", exc_info=True)
            raise ConfigurationError(
                f"could not start the bus: {type(exc).__name__}: {exc}. The previous "
                "settings are kept; choose another --log-dir or --log-file"
            ) from exc
        if self.engine is not None:  # keep the engine's model and tools on the new bus
            self.get_engine()
        self._move_bus_followers(bus)
        return bus


def get_runtime() -> Runtime:
    """The runtime of the current IPython shell (or of this process without one)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        if not _process_runtime:
            _process_runtime.append(Runtime())
        return _process_runtime[0]
    runtime = getattr(shell, _ATTRIBUTE, None)
    if runtime is None:
        runtime = Runtime()
        setattr(shell, _ATTRIBUTE, runtime)
    return runtime


def get_bus() -> MessageBus:
    """The kernel's default bus, started on the kernel's event loop on first use."""
    return get_runtime().get_bus()


def get_engine() -> LLMEngine:
    """The kernel's default engine (on the default bus), created on first use."""
    return get_runtime().get_engine()


def set_engine(engine: LLMEngine) -> LLMEngine:
    """Make ``engine`` the kernel's default engine, and its bus the default bus.

    The magics (``%llmgine chat``, ``cost``, ``cache``, ``conversations``) and chat
    panels then use it: an engine with ``prices=``, ``cache=``, ``budget=`` or
    ``conversations=`` of your choosing. A default bus made before (by a magic) is
    stopped, its log flushed and closed. Returns ``engine``.
    """
    get_runtime().set_engine(engine)
    return engine


def _same_engine_on(old: LLMEngine, bus: MessageBus) -> LLMEngine:
    """An engine on ``bus`` with ``old``'s settings, spend and conversations."""
    from llmgine.llm.conversations.redis import RedisConversationStore

    store = old.conversations.store
    keeper = old.policies.budget
    engine = LLMEngine(
        bus,
        provider=old.provider,
        tools=list(old.tools),
        system_prompt=old.conversations.system_prompt,
        max_tool_rounds=old.max_tool_rounds,
        max_history=old.conversations.max_messages,
        timeout=old.timeout,
        options=old.options,
        max_output_retries=old.max_output_retries,
        prices=old.policies.prices.overrides,
        cache=old.policies.cache,
        budget=None if keeper is None else keeper.budget,
        # A Redis store belongs to its bus: the new bus's Redis holds the same conversations.
        conversations="redis" if isinstance(store, RedisConversationStore) else store,
        max_context_tokens=old.max_context_tokens,
        retries=old.resilience.retries,
        limits=old.resilience.limits,
        fallback=old.resilience.fallback,
    )
    engine.policies.carry_over(old.policies)
    engine.approvals.timeout = old.approvals.timeout
    engine.mcp_servers = old.mcp_servers  # their tools came over with old.tools
    return engine
