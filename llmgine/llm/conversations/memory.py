"""The in-memory conversation store: the default, kept for as long as the process lives."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from llmgine.llm.conversations.conversation import tail
from llmgine.llm.conversations.protocol import (
    ConversationSummary,
    StoredConversation,
    message_tokens,
)
from llmgine.llm.types import ChatMessage

__all__ = ["MemoryConversationStore"]


@dataclass(slots=True)
class _Record:
    system_prompt: str | None
    messages: list[ChatMessage] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    last_turn: int = 0
    last_activity: float = field(default_factory=time.time)


class MemoryConversationStore:
    """Conversations in this process's memory (lost with it).

    Args:
        max_messages: Messages kept per conversation (older turns are forgotten whole,
            and the turns kept numbered from 1 again); ``None`` keeps every message.
    """

    blocking = False

    def __init__(self, max_messages: int | None = None) -> None:
        self.max_messages = max_messages
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryConversationStore({len(self._records)} conversations)"

    def load(self, conversation_id: str, last_messages: int | None) -> StoredConversation | None:
        """The conversation's system prompt and last whole turns, copied."""
        with self._lock:
            record = self._records.get(conversation_id)
            if record is None:
                return None
            start = tail(record.turns, last_messages)
            return StoredConversation(
                record.system_prompt, record.messages[start:], record.turns[start:]
            )

    def append_turn(
        self, conversation_id: str, messages: Sequence[ChatMessage], system_prompt: str | None
    ) -> int:
        """Add one turn."""
        with self._lock:
            record = self._records.setdefault(conversation_id, _Record(system_prompt))
            record.last_turn += 1
            record.messages += messages
            record.turns += [record.last_turn] * len(messages)
            record.last_activity = time.time()
            start = tail(record.turns, self.max_messages)
            if start:  # older turns are forgotten: the oldest kept is turn 1 again
                del record.messages[:start], record.turns[:start]
                shift = record.turns[0] - 1
                record.turns = [turn - shift for turn in record.turns]
                record.last_turn -= shift
            return record.last_turn

    def set_system_prompt(self, conversation_id: str, system_prompt: str | None) -> None:
        """Set a conversation's system prompt."""
        with self._lock:
            record = self._records.setdefault(conversation_id, _Record(system_prompt))
            record.system_prompt = system_prompt
            record.last_activity = time.time()

    def clear(self, conversation_id: str) -> bool:
        """Forget a conversation's messages."""
        with self._lock:
            record = self._records.get(conversation_id)
            if record is None:
                return False
            record.messages, record.turns, record.last_turn = [], [], 0
            return True

    def delete(self, conversation_id: str) -> bool:
        """Forget a conversation."""
        with self._lock:
            return self._records.pop(conversation_id, None) is not None

    def fork(self, conversation_id: str, new_id: str, at_turn: int | None) -> bool:
        """Copy a conversation up to turn ``at_turn`` (all with ``None``).

        Turns are numbered as :meth:`summaries` counts them: 1 is the oldest turn still
        in memory (with ``max_messages`` older turns are forgotten, and the rest
        numbered again from 1).
        """
        with self._lock:
            record = self._records.get(conversation_id)
            if record is None:
                return False
            keep = [i for i, turn in enumerate(record.turns) if at_turn is None or turn <= at_turn]
            turns = [record.turns[i] for i in keep]
            self._records[new_id] = _Record(
                record.system_prompt,
                [record.messages[i] for i in keep],
                turns,
                turns[-1] if turns else 0,
            )
            return True

    def summaries(self) -> list[ConversationSummary]:
        """One row per conversation."""
        with self._lock:
            return [
                ConversationSummary(
                    id=conversation_id,
                    turns=len(set(record.turns)),
                    messages=len(record.messages),
                    tokens=sum(message_tokens(m) for m in record.messages),
                    last_activity=record.last_activity,
                )
                for conversation_id, record in self._records.items()
            ]

    def exists(self, conversation_id: str) -> bool:
        """Whether the conversation is here."""
        return conversation_id in self._records

    def close(self) -> None:
        """Nothing to release."""
