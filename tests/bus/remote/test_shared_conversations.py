"""Conversations in the shared bus's Redis: turn 2 may run on another worker than turn 1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import StartWorker

from llmgine.bus import MessageBus
from llmgine.errors import ConversationNotFoundError
from llmgine.llm import ChatMessage, PromptCommand
from llmgine.llm.conversations import Conversations, RedisConversationStore

pytestmark = pytest.mark.timeout(240)


def shared(caller: MessageBus) -> Conversations:
    """The caller's view of the workers' conversations (no engine: the workers answer)."""
    return Conversations(RedisConversationStore(caller), None, 1000)


async def turn(caller: MessageBus, out: Path, n: int) -> tuple[int, int]:
    """One turn of the conversation "shared": (the pid of the worker that ran it, input tokens)."""
    marker = out / f"turn{n}.txt"
    result = await caller.execute(
        PromptCommand(prompt=f"call whoami path={marker}", conversation_id="shared"), timeout=60
    )
    assert result.success, result.error
    pid = int(await asyncio.to_thread(marker.read_text))
    return pid, int(result.metadata["input_tokens"])


async def test_two_workers_alternate_the_turns_of_one_conversation(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    first = start_worker("conversation_app:setup")
    ran = [await turn(caller, tmp_path, 1)]
    second = start_worker("conversation_app:setup")
    await asyncio.to_thread(first.terminate)
    ran.append(await turn(caller, tmp_path, 2))
    third = start_worker("conversation_app:setup")
    await asyncio.to_thread(second.terminate)
    ran.append(await turn(caller, tmp_path, 3))
    assert [pid for pid, _ in ran] == [first.pid, second.pid, third.pid]
    tokens = [t for _, t in ran]
    assert tokens[0] < tokens[1] < tokens[2]  # each worker sent the turns the others added

    conversations = shared(caller)
    conversation = await conversations.aget("shared")
    assert conversation.system_prompt == "Shared."
    assert conversation.turns == [1] * 4 + [2] * 4 + [3] * 4
    roles = [m.role for m in conversation.messages]
    assert roles == ["user", "assistant", "tool", "assistant"] * 3
    calls = [m.tool_calls[0].id for m in conversation.messages if m.tool_calls]
    answered = [m.tool_call_id for m in conversation.messages if m.role == "tool"]
    assert calls == answered
    frame = await conversations.alist()
    assert frame[["id", "turns", "messages"]].values.tolist() == [["shared", 3, 12]]


async def test_list_get_fork_and_delete_in_redis(caller: MessageBus) -> None:
    conversations = shared(caller)
    store = conversations.store
    for n in range(1, 4):
        messages = [
            ChatMessage(role="user", content=f"q{n}"),
            ChatMessage(role="assistant", content=f"a{n}"),
        ]
        assert await asyncio.to_thread(store.append_turn, "main", messages, "Sys.") == n
    await conversations.aset_system_prompt("empty", "Nothing yet.")

    assert "main" in conversations and "nope" not in conversations
    frame = conversations.list()
    rows = frame[["id", "turns", "messages"]].values.tolist()
    assert sorted(rows) == [["empty", 0, 0], ["main", 3, 6]]

    fork = await conversations.afork("main", at_turn=2)
    got = conversations.get(fork)
    assert (got.system_prompt, [m.content for m in got.messages]) == (
        "Sys.",
        ["q1", "a1", "q2", "a2"],
    )
    assert conversations.get("main").turns == [1, 1, 2, 2, 3, 3]
    start = conversations.get(conversations.fork("main", at_turn=0, new_id="start"))
    assert (start.system_prompt, start.messages) == ("Sys.", [])
    assert conversations.delete("start")
    tail = Conversations(store, None, 3).get("main")  # whole turns of at most 3 messages
    assert [m.content for m in tail.messages] == ["q3", "a3"]

    assert conversations.clear("main") is True
    assert (conversations.get("main").system_prompt, conversations.get("main").messages) == (
        "Sys.",
        [],
    )
    assert await conversations.adelete("main") is True
    assert conversations.delete("main") is False
    assert sorted(conversations.ids()) == sorted(["empty", fork])
    with pytest.raises(ConversationNotFoundError):
        conversations.fork("main")
    await conversations.aclose()
