"""Conversations across processes: a process killed mid-turn, a new process continuing.

The processes are real (``python -c``), killed by pid with SIGKILL; the model is the
offline one, or the real llama.cpp server of the session.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, PromptCommand, ScriptedProvider, SQLiteConversationStore
from llmgine.llm.conversations import StoredConversation
from llmgine.local_server import LlamaServer

CHILD_WAITING_IN_A_TOOL = """
import asyncio, pathlib, sys, time
from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine

db, marker = sys.argv[1], sys.argv[2]

def wait_here(seconds: int) -> str:
    '''Wait a while.

    Args:
        seconds: How long.
    '''
    pathlib.Path(marker).write_text("in the tool")
    time.sleep(seconds)
    return "done"

async def main() -> None:
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    await bus.start()
    engine = LLMEngine(
        bus, model="offline", tools=[wait_here], system_prompt="Kept.",
        conversations=f"sqlite:///{db}",
    )
    await engine.chat("hello")
    await engine.chat("please wait_here seconds 600")

asyncio.run(main())
"""

CHILD_ON_THE_LLAMA_SERVER = """
import asyncio, json, sys
from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, OpenAIProvider, PromptCommand

base_url, model, db, system_prompt = sys.argv[1:5]
prompts = json.loads(sys.argv[5])

async def main() -> None:
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    await bus.start()
    LLMEngine(
        bus, provider=OpenAIProvider(model, base_url=base_url),
        system_prompt=system_prompt or None, conversations=f"sqlite:///{db}",
        options={"seed": 0}, timeout=100,
    )
    tokens = {}
    for conversation_id, prompt in prompts:
        result = await bus.execute(PromptCommand(
            prompt=prompt, conversation_id=conversation_id, temperature=0, max_tokens=12,
        ))
        assert result.success, result.error
        tokens[conversation_id] = result.metadata["input_tokens"]
    await bus.stop()
    print(json.dumps(tokens))

asyncio.run(main())
"""


def wait_for_file(path: Path, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    """Wait until another process writes ``path`` (polling the file system, not the bus)."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the child exited early: {process.stderr.read()!r}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} was not written in {seconds} s")
        time.sleep(0.05)


def kill_a_child_mid_turn(db: Path, marker: Path) -> None:
    """A child that runs turn 1, then is killed with SIGKILL inside turn 2's tool call."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_WAITING_IN_A_TOOL, str(db), str(marker)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_file(marker, child)  # turn 2's tool call is running: its turn is half done
    finally:
        child.kill()  # SIGKILL: no cleanup of any kind
        child.wait(timeout=30)
        assert child.stderr is not None
        child.stderr.close()


@pytest.mark.timeout(120)
async def test_a_process_killed_mid_turn_leaves_no_half_turn_and_a_new_one_continues(
    tmp_path: Path,
) -> None:
    db = tmp_path / "chats.db"
    kill_a_child_mid_turn(db, tmp_path / "in-the-tool")
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    await bus.start()
    engine = LLMEngine(bus, model="offline", conversations=f"sqlite:///{db}")
    kept = engine.conversations.get("default")
    assert kept.system_prompt == "Kept."
    assert [m.role for m in kept.messages] == ["user", "assistant"]  # no dangling user message
    assert kept.messages[0].content == "hello"
    result = await bus.execute(PromptCommand(prompt="still there?"))
    assert result.success, result.error
    roles = [m.role for m in engine.conversations.get("default").messages]
    assert roles == ["user", "assistant", "user", "assistant"]  # no unanswered tool call
    await bus.stop()


def run_child(
    server: LlamaServer, db: Path, system_prompt: str, *prompts: tuple[str, str]
) -> dict[str, int]:
    out = subprocess.run(
        [
            sys.executable, "-c", CHILD_ON_THE_LLAMA_SERVER, server.base_url, server.model,
            str(db), system_prompt, json.dumps(prompts),
        ],
        capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    tokens: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return tokens


@pytest.mark.timeout(300)
def test_a_new_process_continues_a_conversation_on_the_real_llama_server(
    llama_server: LlamaServer, tmp_path: Path
) -> None:
    db = tmp_path / "chats.db"
    run_child(llama_server, db, "You are a helpful assistant.", ("ada", "My name is Ada."))
    # A new process, without the system prompt: the stored conversation has its own.
    tokens = run_child(
        llama_server, db, "", ("ada", "What is my name?"), ("fresh", "What is my name?")
    )
    assert tokens["ada"] > tokens["fresh"] + 10  # the server read turn 1 and the system prompt

    bus = MessageBus(log_dir=None)
    engine = LLMEngine(bus, model="offline", conversations=f"sqlite:///{db}")
    ada = engine.conversations.get("ada")
    assert ada.system_prompt == "You are a helpful assistant."
    assert [(m.role, m.content) for m in ada.messages][::2] == [
        ("user", "My name is Ada."),
        ("user", "What is my name?"),
    ]
    assert [m.role for m in ada.messages] == ["user", "assistant", "user", "assistant"]


CHILD_APPENDING = """
import sys
from llmgine.llm import ChatMessage, SQLiteConversationStore

store = SQLiteConversationStore(sys.argv[1])
tag = sys.argv[2]
for i in range(int(sys.argv[3])):
    store.append_turn("shared", [
        ChatMessage(role="user", content=f"{tag} {i}"),
        ChatMessage(role="assistant", content=f"{tag} {i}"),
    ], None)
"""


@pytest.mark.timeout(120)
def test_two_processes_appending_to_one_conversation_keep_every_turn_whole(
    tmp_path: Path,
) -> None:
    db, turns = tmp_path / "chats.db", 60
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD_APPENDING, str(db), tag, str(turns)])
        for tag in ("a", "b")
    ]
    for child in children:
        assert child.wait(timeout=100) == 0
    bus = MessageBus(log_dir=None)
    engine = LLMEngine(bus, model="offline", conversations=f"sqlite:///{db}", max_history=1000)
    conversation = engine.conversations.get("shared")
    assert conversation.turns == [n for n in range(1, 2 * turns + 1) for _ in range(2)]
    pairs = list(zip(conversation.messages[::2], conversation.messages[1::2], strict=True))
    assert all(user.content == reply.content for user, reply in pairs)  # never interleaved
    for tag in ("a", "b"):  # each process's turns in its own order
        mine = [m.content for m, _ in pairs if (m.content or "").startswith(tag)]
        assert mine == [f"{tag} {i}" for i in range(turns)]


CHILD_ACKNOWLEDGING_A_TURN = """
import asyncio, pathlib, sys, time
from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine

db, marker = sys.argv[1], sys.argv[2]

async def main() -> None:
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    await bus.start()
    engine = LLMEngine(bus, model="offline", conversations=f"sqlite:///{db}")
    for i in range(3):
        await engine.chat(f"turn {i}")
    pathlib.Path(marker).write_text("acknowledged")  # the third prompt has returned
    time.sleep(600)  # the event loop and the store's thread stop here

asyncio.run(main())
"""


@pytest.mark.timeout(120)
def test_a_turn_whose_prompt_returned_is_in_the_file_when_the_process_is_killed(
    tmp_path: Path,
) -> None:
    db, marker = tmp_path / "chats.db", tmp_path / "acknowledged"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_ACKNOWLEDGING_A_TURN, str(db), str(marker)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_file(marker, child)
    finally:
        child.kill()  # SIGKILL right after the acknowledgement: no close, no checkpoint
        child.wait(timeout=30)
        assert child.stderr is not None
        child.stderr.close()
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    engine = LLMEngine(bus, model="offline", conversations=f"sqlite:///{db}")
    kept = engine.conversations.get("default")
    assert [m.content for m in kept.messages][::2] == ["turn 0", "turn 1", "turn 2"]
    assert kept.turns == [1, 1, 2, 2, 3, 3]


@pytest.mark.timeout(120)
async def test_a_turn_sees_what_another_process_added_since_this_engines_last_turn(
    tmp_path: Path,
) -> None:
    """Between its turns an engine keeps the conversation in memory, until another writes."""
    db, loads = tmp_path / "chats.db", []

    class CountingStore(SQLiteConversationStore):
        def load(
            self, conversation_id: str, last_messages: int | None
        ) -> StoredConversation | None:
            loads.append(conversation_id)
            return super().load(conversation_id, last_messages)

    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    await bus.start()
    provider = ScriptedProvider(["one", "two", "three", "four"])
    LLMEngine(bus, provider=provider, conversations=CountingStore(db))

    async def turn(prompt: str) -> None:
        result = await bus.execute(PromptCommand(prompt=prompt, conversation_id="shared"))
        assert result.success, result.error

    await turn("1")
    await turn("2")
    loads.clear()
    await turn("3")
    assert loads == []  # no one else wrote the file: served from memory, no thread hop
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD_APPENDING, str(db), "other", "1",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await other.communicate()
    assert other.returncode == 0, stderr
    await turn("4")
    assert loads == ["shared"]  # the stamp changed: read from the file
    sent = [m.content for m in provider.requests[-1].messages]
    assert sent == ["1", "one", "2", "two", "3", "three", "other 0", "other 0", "4"]
    await bus.stop()
