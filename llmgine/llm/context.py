"""The in-memory conversation store: system prompt and history per conversation id."""

from __future__ import annotations

from llmgine.errors import ConfigurationError
from llmgine.llm.types import ChatMessage

__all__ = ["Conversation", "ConversationStore"]


class Conversation:
    """One conversation: its system prompt and its messages, oldest first.

    Args:
        conversation_id: The id prompts use to continue it.
        system_prompt: Sent first on every request, if set.
        max_messages: The history kept; older messages are dropped a whole turn
            at a time, so a tool result never loses the call it answers.
    """

    def __init__(
        self, conversation_id: str, system_prompt: str | None = None, max_messages: int = 100
    ) -> None:
        if max_messages < 1:
            raise ConfigurationError(f"max_messages must be at least 1; got {max_messages}.")
        self.id = conversation_id
        self.system_prompt = system_prompt
        self.max_messages = max_messages
        self.messages: list[ChatMessage] = []

    def __repr__(self) -> str:
        return f"Conversation({self.id!r}, {len(self.messages)} messages)"

    def append(self, message: ChatMessage) -> None:
        """Add a message, then trim the oldest turns past ``max_messages``."""
        self.messages.append(message)
        self._trim()

    def _trim(self) -> None:
        while len(self.messages) > self.max_messages:
            # Drop the oldest turn: the first message and whatever follows it up to the next
            # user message, unless that would leave nothing of the current turn.
            next_user = next(
                (i for i, m in enumerate(self.messages[1:], 1) if m.role == "user"), None
            )
            if next_user is None:
                break
            del self.messages[:next_user]

    def request_messages(self) -> list[ChatMessage]:
        """The messages to send: the system prompt (if any), then the history."""
        if self.system_prompt:
            return [ChatMessage(role="system", content=self.system_prompt), *self.messages]
        return list(self.messages)

    def clear(self) -> None:
        """Forget the history; the system prompt stays."""
        self.messages.clear()


class ConversationStore:
    """Conversations by id, created on first use with the engine's defaults."""

    def __init__(self, system_prompt: str | None = None, max_messages: int = 100) -> None:
        self.system_prompt = system_prompt
        self.max_messages = max_messages
        self._conversations: dict[str, Conversation] = {}

    def get(self, conversation_id: str) -> Conversation:
        """Return the conversation, creating it if new."""
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            conversation = Conversation(conversation_id, self.system_prompt, self.max_messages)
            self._conversations[conversation_id] = conversation
        return conversation

    def __contains__(self, conversation_id: object) -> bool:
        return conversation_id in self._conversations

    def ids(self) -> list[str]:
        """The ids of every conversation so far."""
        return list(self._conversations)

    def clear(self, conversation_id: str) -> bool:
        """Clear one conversation's history; return whether it existed."""
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            return False
        conversation.clear()
        return True
