"""``engine.conversations``: list, read, fork and delete conversations, from cells or coroutines.

Every method has a synchronous form for notebook cells (``engine.conversations.list()``)
and an async one for coroutines (``await engine.conversations.alist()``). The async
forms never block the event loop: a store that does I/O (SQLite, Redis) is called in a
thread of its own (a :class:`~llmgine.llm.conversations.thread.StoreThread`, one per
engine, calls one at a time in the order made), or for a turn's load not at all when
the store knows without I/O that its copy in memory is current (its ``load_fresh``).
A synchronous call waits for the store where it is called (a few milliseconds for a
local SQLite file), which is what a cell wants.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from llmgine._urls import redact_text
from llmgine.errors import ConfigurationError, ConversationNotFoundError
from llmgine.llm.commands import ClearConversationCommand, SetSystemPromptCommand
from llmgine.llm.conversations.conversation import Conversation
from llmgine.llm.conversations.memory import MemoryConversationStore
from llmgine.llm.conversations.protocol import ConversationStore, StoredConversation
from llmgine.llm.conversations.thread import StoreThread

if TYPE_CHECKING:
    import pandas as pd

    from llmgine.bus.bus import MessageBus
    from llmgine.llm.types import ChatMessage

__all__ = ["ConversationSetting", "Conversations", "store_for"]

T = TypeVar("T")

ConversationSetting = str | ConversationStore | None
"""``None`` (in memory), ``"sqlite:///path.db"``, ``"redis"``, or a :class:`ConversationStore`."""


def store_for(
    setting: ConversationSetting, bus: MessageBus, max_messages: int
) -> ConversationStore:
    """The store an engine's ``conversations=`` setting names.

    Raises:
        ConfigurationError: The setting is none of the forms above.
    """
    if setting is None or setting == "memory":
        return MemoryConversationStore(max_messages)
    if isinstance(setting, str):
        if setting == "redis":
            from llmgine.llm.conversations.redis import RedisConversationStore

            return RedisConversationStore(bus)
        if setting.startswith("sqlite:///"):
            from llmgine.llm.conversations.sqlite import SQLiteConversationStore

            path = setting.removeprefix("sqlite:///")
            if "?" in path:
                file, _, query = path.partition("?")
                raise ConfigurationError(
                    f"conversations={redact_text(setting)!r} has a query string "
                    f"({redact_text('?' + query)!r}): the SQLite store takes no options in its "
                    f"URL, and would otherwise make a file named with it; give just the file, "
                    f"'sqlite:///{redact_text(file)}' (for a file whose name holds '?', pass "
                    "SQLiteConversationStore(path))."
                )
            return SQLiteConversationStore(path)
        raise ConfigurationError(
            f"conversations={redact_text(setting)!r} is not a store: use "
            "'sqlite:///path/to/chats.db' (a file; four slashes for an absolute path), "
            "'redis' (the connected bus's Redis), "
            "'memory', or a ConversationStore."
        )
    if isinstance(setting, ConversationStore):
        return setting
    raise ConfigurationError(
        f"conversations= takes a string or a ConversationStore, not {type(setting).__name__}."
    )


class Conversations:
    """The engine's conversations, kept in its store (``engine.conversations``).

    Args:
        store: Where they are kept.
        system_prompt: The system prompt of a conversation's first turn, unless one was set.
        max_messages: The history a prompt loads and sends (whole turns); the store may keep more.
    """

    def __init__(
        self, store: ConversationStore, system_prompt: str | None, max_messages: int
    ) -> None:
        self.store = store
        self.system_prompt = system_prompt
        self.max_messages = max_messages
        self._thread = StoreThread("llmgine-conversations")

    def __repr__(self) -> str:
        return f"<Conversations in {self.store!r}>"

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self.store.blocking:
            return await self._thread.run(fn, *args)
        return fn(*args)

    def _conversation(
        self, conversation_id: str, stored: StoredConversation | None
    ) -> Conversation:
        if stored is None:
            return Conversation(conversation_id, self.system_prompt, self.max_messages, owner=self)
        return Conversation(
            conversation_id,
            stored.system_prompt,
            self.max_messages,
            messages=stored.messages,
            turns=stored.turns,
            owner=self,
        )

    # Reading

    def new(self, conversation_id: str) -> Conversation:
        """``conversation_id`` as a new conversation starts: empty, the engine's system prompt.

        Nothing is read from the store or written to it: for a prompt whose conversation
        id is its own (a ``map`` row's), where reading would only find nothing.
        """
        _check_id(conversation_id)
        return self._conversation(conversation_id, None)

    def get(self, conversation_id: str) -> Conversation:
        """The conversation ``conversation_id`` (empty, with the engine's system prompt, if new).

        Its ``messages`` are the history a prompt would send (the last ``max_history``,
        whole turns); ``fork`` and ``list`` see every stored message.

        Raises:
            TypeError: ``conversation_id`` is not a string (``None``, ``123``).
        """
        _check_id(conversation_id)
        return self._conversation(
            conversation_id, self.store.load(conversation_id, self.max_messages)
        )

    async def aget(self, conversation_id: str) -> Conversation:
        """:meth:`get` for coroutines (from the store's memory when it knows it is current)."""
        _check_id(conversation_id)
        load_fresh: Callable[[str, int], StoredConversation | None] | None = getattr(
            self.store, "load_fresh", None
        )
        stored = None if load_fresh is None else load_fresh(conversation_id, self.max_messages)
        if stored is None:
            stored = await self._call(self.store.load, conversation_id, self.max_messages)
        return self._conversation(conversation_id, stored)

    def __contains__(self, conversation_id: object) -> bool:
        return isinstance(conversation_id, str) and self.store.exists(conversation_id)

    def ids(self) -> list[str]:
        """The ids of every stored conversation."""
        return [s.id for s in self.store.summaries()]

    def list(self) -> pd.DataFrame:
        """One row per conversation: ``id``, ``turns``, ``messages``, ``tokens``, ``last_activity``.

        Newest activity first; ``tokens`` is estimated; ``last_activity`` is a UTC timestamp.
        """
        return _frame(self.store.summaries())

    async def alist(self) -> pd.DataFrame:
        """:meth:`list` for coroutines (pandas is imported and the frame built in a thread)."""
        return await asyncio.to_thread(self.list)

    # Changing

    def fork(
        self, conversation_id: str, at_turn: int | None = None, *, new_id: str | None = None
    ) -> str:
        """Copy a conversation (up to turn ``at_turn``, 1 being the first; all with ``None``).

        The copy continues on its own; returns its id (``new_id``, or a new one).

        Raises:
            ConversationNotFoundError: No conversation ``conversation_id`` is stored.
            ConfigurationError: ``new_id`` names a conversation that exists (it is kept), or
                ``at_turn`` is negative or past the conversation's last turn.
            TypeError: ``at_turn`` is not a whole number (``1.5``, ``"2"``, ``True``), or an
                id is not a string.
        """
        turn = _turn(at_turn)
        _check_id(conversation_id)
        new_id = new_id or _new_id(conversation_id)
        _check_id(new_id, "new_id")
        if self.store.exists(new_id):
            raise _taken(new_id)
        if turn is not None:
            _check_range(conversation_id, turn, self.store.load(conversation_id, self.max_messages))
        if not self.store.fork(conversation_id, new_id, turn):
            raise _not_found(conversation_id)
        return new_id

    async def afork(
        self, conversation_id: str, at_turn: int | None = None, *, new_id: str | None = None
    ) -> str:
        """:meth:`fork` for coroutines."""
        turn = _turn(at_turn)
        _check_id(conversation_id)
        new_id = new_id or _new_id(conversation_id)
        _check_id(new_id, "new_id")
        if await self._call(self.store.exists, new_id):
            raise _taken(new_id)
        if turn is not None:
            stored = await self._call(self.store.load, conversation_id, self.max_messages)
            _check_range(conversation_id, turn, stored)
        if not await self._call(self.store.fork, conversation_id, new_id, turn):
            raise _not_found(conversation_id)
        return new_id

    def delete(self, conversation_id: str) -> bool:
        """Forget a conversation entirely; returns whether it existed."""
        return self.store.delete(conversation_id)

    async def adelete(self, conversation_id: str) -> bool:
        """:meth:`delete` for coroutines."""
        return await self._call(self.store.delete, conversation_id)

    def clear(self, conversation_id: str) -> bool:
        """Forget a conversation's history (its system prompt stays); whether it existed."""
        return self.store.clear(conversation_id)

    async def aclear(self, conversation_id: str) -> bool:
        """:meth:`clear` for coroutines."""
        return await self._call(self.store.clear, conversation_id)

    def set_system_prompt(self, conversation_id: str, system_prompt: str | None) -> None:
        """Set (or remove) a conversation's system prompt."""
        self.store.set_system_prompt(conversation_id, system_prompt)

    async def aset_system_prompt(self, conversation_id: str, system_prompt: str | None) -> None:
        """:meth:`set_system_prompt` for coroutines."""
        await self._call(self.store.set_system_prompt, conversation_id, system_prompt)

    async def append_turn(self, conversation: Conversation, messages: Sequence[ChatMessage]) -> int:
        """Save one turn of ``conversation`` in one write (see :meth:`Conversation.add_turn`)."""
        return await self._call(
            self.store.append_turn, conversation.id, list(messages), conversation.system_prompt
        )

    def start_append_turn(
        self, conversation: Conversation, messages: Sequence[ChatMessage]
    ) -> asyncio.Future[int]:
        """:meth:`append_turn` for a store doing I/O, started now in the store's thread.

        The write runs to its end even if the future is cancelled.
        """
        return self._thread.submit(
            self.store.append_turn, conversation.id, list(messages), conversation.system_prompt
        )

    # The engine's commands

    def register(self, bus: MessageBus) -> None:
        """Handle ``ClearConversationCommand`` and ``SetSystemPromptCommand`` on ``bus``."""
        bus.register_command_handler(ClearConversationCommand, self._handle_clear, replace=True)
        bus.register_command_handler(
            SetSystemPromptCommand, self._handle_system_prompt, replace=True
        )

    async def _handle_clear(self, command: ClearConversationCommand) -> bool:
        return await self.aclear(command.conversation_id)

    async def _handle_system_prompt(self, command: SetSystemPromptCommand) -> None:
        await self.aset_system_prompt(command.conversation_id, command.system_prompt)

    async def aclose(self) -> None:
        """Close the store's connections (and end its thread: the next call starts one)."""
        await self._call(self.store.close)
        self._thread.stop()


def _turn(at_turn: object) -> int | None:
    """``at_turn`` checked: ``None`` (every turn) or a whole number of turns, 0 or more."""
    if at_turn is None:
        return None
    if isinstance(at_turn, bool) or not isinstance(at_turn, int):
        raise TypeError(
            f"at_turn must be a whole number of turns (1 being the first; 0 for none) or None "
            f"for all, not {type(at_turn).__name__} {at_turn!r}: e.g. fork(id, at_turn=2)."
        )
    if at_turn < 0:
        raise ConfigurationError(f"at_turn must be 0 or more (or None); got {at_turn}.")
    return at_turn


def _check_id(conversation_id: object, name: str = "conversation_id") -> None:
    """Refuse an id that is not a string (``None``, ``123``): no store holds one."""
    if not isinstance(conversation_id, str):
        raise TypeError(
            f"{name} must be a string, not {type(conversation_id).__name__} "
            f'{conversation_id!r}: e.g. get("support-42"); see engine.conversations.ids().'
        )


def _check_range(conversation_id: str, at_turn: int, stored: StoredConversation | None) -> None:
    """Refuse ``at_turn`` past the last turn of ``conversation_id`` (when it is stored)."""
    if stored is None:
        return  # not stored: fork says so
    last = stored.turns[-1] if stored.turns else 0
    if at_turn > last:
        raise ConfigurationError(
            f"at_turn must be between 0 and {last}: conversation {conversation_id!r} has "
            f"{last} turn{'s' if last != 1 else ''}; at_turn=None copies them all."
        )


def _new_id(conversation_id: str) -> str:
    return f"{conversation_id}-{uuid.uuid4().hex[:8]}"


def _not_found(conversation_id: str) -> ConversationNotFoundError:
    return ConversationNotFoundError(
        f"No conversation {conversation_id!r} is stored; see engine.conversations.list() "
        "for the ids."
    )


def _frame(summaries: Sequence[Any]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(
        [(s.id, s.turns, s.messages, s.tokens, s.last_activity) for s in summaries],
        columns=["id", "turns", "messages", "tokens", "last_activity"],
    )
    frame["last_activity"] = pd.to_datetime(frame["last_activity"], unit="s", utc=True)
    return frame.sort_values("last_activity", ascending=False, ignore_index=True)


def _taken(new_id: str) -> ConfigurationError:
    return ConfigurationError(
        f"A conversation {new_id!r} exists already, and a fork never overwrites one: fork to "
        "another new_id (or none, for a fresh one), or delete it first."
    )
