"""One conversation as a prompt sees it: its system prompt and its messages, oldest first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

from llmgine.errors import ConfigurationError
from llmgine.llm.types import ChatMessage

if TYPE_CHECKING:
    from llmgine.llm.conversations.facade import Conversations

__all__ = ["Conversation", "tail"]


def tail(turns: Sequence[int], limit: int | None) -> int:
    """Where the last whole turns of at most ``limit`` messages start (an index into ``turns``).

    ``turns`` is the turn number of each message, oldest first. The newest turn is
    always kept whole, even when it alone has more than ``limit`` messages, so a tool
    result never loses the call it answers.
    """
    if limit is None or len(turns) <= limit:
        return 0
    start = len(turns) - limit
    if start > 0 and turns[start - 1] == turns[start]:  # the turn at the cut began earlier
        boundary = turns[start]
        while start < len(turns) and turns[start] == boundary:
            start += 1
    if start == len(turns):  # the newest turn alone is longer than the limit
        start = len(turns) - 1
        while start > 0 and turns[start - 1] == turns[-1]:
            start -= 1
    return start


class Conversation:
    """One conversation: its system prompt and its messages, oldest first.

    ``engine.conversations.get(id)`` returns one read from the engine's store;
    setting :attr:`system_prompt` on it is saved there too. A prompt adds its
    messages as one turn (:meth:`add_turn`), only when it succeeds.

    Args:
        conversation_id: The id prompts use to continue it.
        system_prompt: Sent first on every request, if set.
        max_messages: The history a prompt sends; older messages are left out a whole
            turn at a time, so a tool result never loses the call it answers.
        messages: Its messages so far.
        turns: The turn number of each of ``messages`` (default: a user message starts one).
    """

    def __init__(
        self,
        conversation_id: str,
        system_prompt: str | None = None,
        max_messages: int = 100,
        *,
        messages: Sequence[ChatMessage] = (),
        turns: Sequence[int] | None = None,
        owner: Conversations | None = None,
    ) -> None:
        if max_messages < 1:
            raise ConfigurationError(f"max_messages must be at least 1; got {max_messages}.")
        self.id = conversation_id
        self._system_prompt = system_prompt
        self.max_messages = max_messages
        self.messages: list[ChatMessage] = list(messages)
        self.turns: list[int] = list(turns) if turns is not None else _turns_of(self.messages)
        """The turn number of each message (1 for the first prompt's messages, ...)."""
        self._owner = owner

    def __repr__(self) -> str:
        return f"Conversation({self.id!r}, {len(self.messages)} messages)"

    @property
    def saved_off_loop(self) -> bool:
        """Whether saving a turn leaves the event loop (a store doing I/O in a thread)."""
        return self._owner is not None and self._owner.store.blocking

    @property
    def system_prompt(self) -> str | None:
        """Sent first on every request; setting it saves it in the engine's store."""
        return self._system_prompt

    @system_prompt.setter
    def system_prompt(self, value: str | None) -> None:
        if self._owner is not None:
            self._owner.set_system_prompt(self.id, value)
        self._system_prompt = value

    def system_prompt_for_turn(self, value: str) -> None:
        """Use ``value`` as the system prompt from the next turn on, saved with that turn.

        Unlike setting :attr:`system_prompt`, nothing is written now: a prompt that
        fails leaves the stored conversation as it was.
        """
        self._system_prompt = value

    @property
    def turn_count(self) -> int:
        """The number of the latest turn (0 before the first)."""
        return self.turns[-1] if self.turns else 0

    def append(self, message: ChatMessage) -> None:
        """Add one message here (not to a store); a user message starts a turn."""
        starts = message.role == "user" or not self.turns
        self.turns.append(self.turn_count + 1 if starts else self.turn_count)
        self.messages.append(message)
        self._trim()

    def add_turn(self, messages: Sequence[ChatMessage]) -> Awaitable[object]:
        """Add a prompt's messages as one turn: saved in the store in one write, then here.

        Await the result. With a store doing I/O (:attr:`saved_off_loop`) the write
        starts at once in the store's thread and the messages are added here when it
        is done; await it with ``asyncio.shield`` so a cancel cannot part the two.
        """
        messages = list(messages)
        if not self.saved_off_loop:
            return self._add_turn_here(messages)
        assert self._owner is not None
        saved = self._owner.start_append_turn(self, messages)

        def added(saved: asyncio.Future[int]) -> None:
            if not saved.cancelled() and saved.exception() is None:
                self._extend(messages)

        saved.add_done_callback(added)  # before any waiter's: the turn is here when it wakes
        return saved

    async def _add_turn_here(self, messages: list[ChatMessage]) -> None:
        if self._owner is not None:
            await self._owner.append_turn(self, messages)
        self._extend(messages)

    def _extend(self, messages: list[ChatMessage]) -> None:
        number = self.turn_count + 1
        self.messages += messages
        self.turns += [number] * len(messages)
        self._trim()

    def _trim(self) -> None:
        start = tail(self.turns, self.max_messages)
        if start:
            del self.messages[:start], self.turns[:start]

    def request_messages(self) -> list[ChatMessage]:
        """The messages to send: the system prompt (if any), then the history."""
        if self._system_prompt:
            return [ChatMessage(role="system", content=self._system_prompt), *self.messages]
        return list(self.messages)

    def clear(self) -> None:
        """Forget the history (in the store too); the system prompt stays."""
        if self._owner is not None:
            self._owner.clear(self.id)
        self.messages.clear()
        self.turns.clear()


def _turns_of(messages: Sequence[ChatMessage]) -> list[int]:
    turns: list[int] = []
    for message in messages:
        starts = message.role == "user" or not turns
        turns.append((turns[-1] if turns else 0) + 1 if starts else turns[-1])
    return turns
