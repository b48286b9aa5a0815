"""Conversations: kept in memory, in a SQLite file or in the shared bus's Redis; trimmed to fit.

``LLMEngine(..., conversations="sqlite:///chats.db")`` keeps every conversation in a
file a new engine (another kernel, another process) continues; ``"redis"`` shares them
between the workers of a shared bus. ``engine.conversations`` lists, reads, forks and
deletes them (see :class:`Conversations`). ``max_context_tokens=`` keeps requests
inside the model's window (see :mod:`llmgine.llm.conversations.trimming`).
"""

from __future__ import annotations

from llmgine.llm.conversations.conversation import Conversation
from llmgine.llm.conversations.facade import Conversations, ConversationSetting, store_for
from llmgine.llm.conversations.memory import MemoryConversationStore
from llmgine.llm.conversations.protocol import (
    ConversationStore,
    ConversationSummary,
    StoredConversation,
)
from llmgine.llm.conversations.redis import RedisConversationStore
from llmgine.llm.conversations.sqlite import SQLiteConversationStore
from llmgine.llm.conversations.trimming import ContextWindow, token_counter

__all__ = [
    "ContextWindow",
    "Conversation",
    "ConversationSetting",
    "ConversationStore",
    "ConversationSummary",
    "Conversations",
    "MemoryConversationStore",
    "RedisConversationStore",
    "SQLiteConversationStore",
    "StoredConversation",
    "store_for",
    "token_counter",
]
