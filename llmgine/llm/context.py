"""``Conversation`` and ``ConversationStore``, from their first home: see :mod:`.conversations`."""

from __future__ import annotations

from llmgine.llm.conversations import Conversation, ConversationStore

__all__ = ["Conversation", "ConversationStore"]
