"""Conversations in the shared bus's Redis: every worker of the namespace sees every conversation.

``LLMEngine(..., conversations="redis")`` on a bus connected to Redis: turn 1 of a
conversation may run on one worker and turn 2 on another. Keys, under
``{namespace}:conversations``:

- ``...:turns:{id}``: a list, one element per turn (the turn's messages as JSON),
  appended with one ``RPUSH``: a turn is there whole or not at all;
- ``...:meta:{id}``: a hash (system prompt, messages, tokens, last activity);
- ``...:ids``: a sorted set of the ids by last activity.

The calls are synchronous (redis-py's blocking client, its own small pool, from the
bus's URL); ``engine.conversations`` runs them in a thread from async code.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmgine.llm.conversations.conversation import tail
from llmgine.llm.conversations.protocol import (
    ConversationSummary,
    StoredConversation,
    message_tokens,
)
from llmgine.llm.shared import shared_store
from llmgine.llm.types import ChatMessage

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus

__all__ = ["RedisConversationStore"]

SETTING = 'conversations="redis"'


class RedisConversationStore:
    """Conversations in the Redis of ``bus``'s shared bus, shared by its workers.

    The bus may connect after the engine is made: the store finds its Redis on each use.

    Args:
        bus: The engine's bus.
    """

    blocking = True

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self._client: Any = None
        self._url: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "RedisConversationStore()"

    def _place(self) -> tuple[Any, str]:
        """The blocking client and the key prefix, (re)made when the bus's Redis changed."""
        prefix = shared_store(self.bus, "conversations", SETTING).prefix
        remote = self.bus.remote
        assert remote is not None  # shared_store said so
        with self._lock:
            if self._client is None or self._url != remote.url:
                import redis

                if self._client is not None:
                    self._client.close()
                self._client = redis.Redis.from_url(
                    remote.url, socket_timeout=30, socket_connect_timeout=10
                )
                self._url = remote.url
            return self._client, prefix

    def load(self, conversation_id: str, last_messages: int | None) -> StoredConversation | None:
        """The system prompt and the last whole turns."""
        client, prefix = self._place()
        meta_key, turns_key = _keys(prefix, conversation_id)
        meta = client.hgetall(meta_key)
        if not meta:
            return None
        count = int(meta.get(b"messages", 0))
        if last_messages is None or count <= last_messages:
            elements = client.lrange(turns_key, 0, -1)
            first = 1
        else:
            want = 8
            while True:
                elements = client.lrange(turns_key, -want, -1)
                size = sum(len(json.loads(e)) for e in elements)
                if size > last_messages or len(elements) < want:
                    break
                want *= 2
            first = max(client.llen(turns_key) - len(elements), 0) + 1
        messages: list[ChatMessage] = []
        turns: list[int] = []
        for number, element in enumerate(elements, first):
            for item in json.loads(element):
                messages.append(ChatMessage.model_validate(item))
                turns.append(number)
        start = tail(turns, last_messages)
        return StoredConversation(
            json.loads(meta[b"system_prompt"]), messages[start:], turns[start:]
        )

    def append_turn(
        self, conversation_id: str, messages: Sequence[ChatMessage], system_prompt: str | None
    ) -> int:
        """Add one turn: one ``MULTI``/``EXEC`` (the ``RPUSH`` and the counters)."""
        client, prefix = self._place()
        meta_key, turns_key = _keys(prefix, conversation_id)
        now = time.time()
        element = json.dumps([m.model_dump(mode="json") for m in messages])
        with client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(meta_key, "system_prompt", json.dumps(system_prompt))
            pipe.rpush(turns_key, element)
            pipe.hincrby(meta_key, "messages", len(messages))
            pipe.hincrby(meta_key, "tokens", sum(message_tokens(m) for m in messages))
            pipe.hset(meta_key, "last_activity", now)
            pipe.zadd(f"{prefix}:ids", {conversation_id: now})
            replies = pipe.execute()
        return int(replies[1])

    def set_system_prompt(self, conversation_id: str, system_prompt: str | None) -> None:
        """Set a conversation's system prompt."""
        client, prefix = self._place()
        meta_key, _ = _keys(prefix, conversation_id)
        now = time.time()
        with client.pipeline(transaction=True) as pipe:
            pipe.hset(meta_key, mapping={"system_prompt": json.dumps(system_prompt)})
            pipe.hsetnx(meta_key, "messages", 0)
            pipe.hsetnx(meta_key, "tokens", 0)
            pipe.hset(meta_key, "last_activity", now)
            pipe.zadd(f"{prefix}:ids", {conversation_id: now})
            pipe.execute()

    def clear(self, conversation_id: str) -> bool:
        """Forget a conversation's messages."""
        client, prefix = self._place()
        meta_key, turns_key = _keys(prefix, conversation_id)
        if not client.exists(meta_key):
            return False
        with client.pipeline(transaction=True) as pipe:
            pipe.delete(turns_key)
            pipe.hset(meta_key, mapping={"messages": 0, "tokens": 0})
            pipe.execute()
        return True

    def delete(self, conversation_id: str) -> bool:
        """Forget a conversation."""
        client, prefix = self._place()
        meta_key, turns_key = _keys(prefix, conversation_id)
        with client.pipeline(transaction=True) as pipe:
            pipe.delete(meta_key)
            pipe.delete(turns_key)
            pipe.zrem(f"{prefix}:ids", conversation_id)
            existed = pipe.execute()[0]
        return bool(existed)

    def fork(self, conversation_id: str, new_id: str, at_turn: int | None) -> bool:
        """Copy a conversation up to a turn."""
        client, prefix = self._place()
        meta_key, turns_key = _keys(prefix, conversation_id)
        new_meta, new_turns = _keys(prefix, new_id)
        meta = client.hgetall(meta_key)
        if not meta:
            return False
        last = -1 if at_turn is None else at_turn - 1
        elements = client.lrange(turns_key, 0, last) if last != -1 or at_turn is None else []
        kept = [ChatMessage.model_validate(m) for e in elements for m in json.loads(e)]
        now = time.time()
        with client.pipeline(transaction=True) as pipe:
            pipe.delete(new_turns)
            if elements:
                pipe.rpush(new_turns, *elements)
            pipe.delete(new_meta)
            pipe.hset(
                new_meta,
                mapping={
                    "system_prompt": meta[b"system_prompt"],
                    "messages": len(kept),
                    "tokens": sum(message_tokens(m) for m in kept),
                    "last_activity": now,
                },
            )
            pipe.zadd(f"{prefix}:ids", {new_id: now})
            pipe.execute()
        return True

    def summaries(self) -> list[ConversationSummary]:
        """One row per conversation (two round trips)."""
        client, prefix = self._place()
        ids = [i.decode() for i in client.zrange(f"{prefix}:ids", 0, -1)]
        with client.pipeline(transaction=False) as pipe:
            for conversation_id in ids:
                meta_key, turns_key = _keys(prefix, conversation_id)
                pipe.hgetall(meta_key)
                pipe.llen(turns_key)
            replies = pipe.execute()
        rows = []
        for conversation_id, meta, turns in zip(ids, replies[::2], replies[1::2], strict=True):
            if meta:
                rows.append(
                    ConversationSummary(
                        id=conversation_id,
                        turns=int(turns),
                        messages=int(meta.get(b"messages", 0)),
                        tokens=int(meta.get(b"tokens", 0)),
                        last_activity=float(meta.get(b"last_activity", 0)),
                    )
                )
        return rows

    def exists(self, conversation_id: str) -> bool:
        """Whether Redis has the conversation."""
        client, prefix = self._place()
        return bool(client.exists(_keys(prefix, conversation_id)[0]))

    def close(self) -> None:
        """Close the blocking client's connections."""
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = self._url = None


def _keys(prefix: str, conversation_id: str) -> tuple[str, str]:
    return f"{prefix}:meta:{conversation_id}", f"{prefix}:turns:{conversation_id}"
