"""What a conversation store does: the few storage calls ``engine.conversations`` is built on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from llmgine.llm.providers.base import count_tokens
from llmgine.llm.types import ChatMessage

__all__ = ["ConversationStore", "ConversationSummary", "StoredConversation", "message_tokens"]


def message_tokens(message: ChatMessage) -> int:
    """A message's size in tokens, estimated (words and marks, plus the chat template's few)."""
    return (
        4
        + count_tokens(message.content)
        + sum(count_tokens(c.arguments) + count_tokens(c.name) + 1 for c in message.tool_calls)
    )


@dataclass(slots=True)
class StoredConversation:
    """A conversation as read from a store: its system prompt and (the end of) its history."""

    system_prompt: str | None
    messages: list[ChatMessage] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    """The turn number of each message."""


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """One row of ``engine.conversations.list()``."""

    id: str
    turns: int
    messages: int
    tokens: int
    """Estimated tokens of every stored message (see :func:`message_tokens`)."""
    last_activity: float
    """When a turn was last added (or the system prompt set), as a Unix timestamp."""


@runtime_checkable
class ConversationStore(Protocol):
    """Where conversations are kept: in memory, in SQLite, or in the shared bus's Redis.

    Every call is synchronous; ``engine.conversations`` runs the calls of a store
    whose ``blocking`` is true in a thread when used from async code, so the event
    loop never waits on a disk or a socket. A turn is appended in one atomic write:
    a turn is in the store whole, or not at all.

    A store may also offer ``load_fresh(conversation_id, last_messages)``, which the
    event loop calls before a turn's ``load``: the conversation from the store's memory
    when it knows, without any I/O, that no one changed it since; ``None`` otherwise.
    """

    blocking: bool
    """Whether calls wait on I/O (then async callers run them in a thread)."""

    def load(self, conversation_id: str, last_messages: int | None) -> StoredConversation | None:
        """The conversation (its last whole turns of at most ``last_messages`` messages).

        ``None`` when the store has never seen it.
        """
        ...

    def append_turn(
        self,
        conversation_id: str,
        messages: Sequence[ChatMessage],
        system_prompt: str | None,
    ) -> int:
        """Add one turn's messages atomically; returns the turn's number.

        ``system_prompt`` is saved with the conversation's first turn, unless one was set.
        """
        ...

    def set_system_prompt(self, conversation_id: str, system_prompt: str | None) -> None:
        """Set (or with ``None`` remove) a conversation's system prompt; creates it if new."""
        ...

    def clear(self, conversation_id: str) -> bool:
        """Forget a conversation's messages (its system prompt stays); whether it existed."""
        ...

    def delete(self, conversation_id: str) -> bool:
        """Forget a conversation entirely; whether it existed."""
        ...

    def fork(self, conversation_id: str, new_id: str, at_turn: int | None) -> bool:
        """Copy a conversation's system prompt and turns up to ``at_turn`` (all: ``None``).

        Returns whether ``conversation_id`` existed.
        """
        ...

    def summaries(self) -> list[ConversationSummary]:
        """One summary per conversation, in no particular order."""
        ...

    def exists(self, conversation_id: str) -> bool:
        """Whether the store has the conversation."""
        ...

    def close(self) -> None:
        """Release connections; the store reopens them if used again."""
        ...
