"""Conversation stores: in memory, in a SQLite file; a new engine continues what another kept.

The Redis store is tested with real workers in tests/bus/remote/test_shared_conversations.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from llmgine.bus import MessageBus
from llmgine.errors import ConfigurationError, ConversationNotFoundError, ProviderError
from llmgine.llm import (
    ChatMessage,
    ClearConversationCommand,
    ConversationStore,
    LLMEngine,
    MemoryConversationStore,
    PromptCommand,
    ScriptedProvider,
    SetSystemPromptCommand,
    SQLiteConversationStore,
)
from llmgine.llm.conversations import StoredConversation

pytestmark = pytest.mark.timeout(120)

MakeStore = Callable[[], ConversationStore]


def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    """Opens the same store again each call: one object in memory, one file for SQLite."""
    if request.param == "memory":
        store = MemoryConversationStore()
        return lambda: store
    return lambda: SQLiteConversationStore(tmp_path / "chats.db")


async def quiet_bus() -> MessageBus:
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    await bus.start()
    return bus


async def test_a_new_engine_on_the_store_continues_exactly_with_system_prompt_and_tools(
    make_store: MakeStore,
) -> None:
    first = await quiet_bus()
    engine = LLMEngine(
        first,
        provider=ScriptedProvider([ScriptedProvider.call("add", a=1, b=2), "It is 3."]),
        tools=[add],
        system_prompt="You add.",
        conversations=make_store(),
    )
    assert await engine.chat("add 1 and 2", conversation_id="sums") == "It is 3."
    await first.stop()

    second = await quiet_bus()
    provider = ScriptedProvider(["Still 3."])
    LLMEngine(second, provider=provider, tools=[add], conversations=make_store())
    assert (await second.execute(PromptCommand(prompt="again?", conversation_id="sums"))).success
    sent = [
        (m.role, m.content, [c.name for c in m.tool_calls]) for m in provider.requests[0].messages
    ]
    assert sent == [
        ("system", "You add.", []),
        ("user", "add 1 and 2", []),
        ("assistant", None, ["add"]),
        ("tool", "3", []),
        ("assistant", "It is 3.", []),
        ("user", "again?", []),
    ]
    assert (
        provider.requests[0].messages[3].tool_call_id
        == provider.requests[0].messages[2].tool_calls[0].id
    )
    await second.stop()


async def test_a_failed_turn_leaves_the_stored_conversation_as_it_was(
    make_store: MakeStore,
) -> None:
    bus = await quiet_bus()
    provider = ScriptedProvider(
        ["one", ScriptedProvider.call("add", a=1, b=2), ProviderError("the server broke")]
    )
    engine = LLMEngine(bus, provider=provider, tools=[add], conversations=make_store())
    await engine.chat("first")
    failed = await bus.execute(PromptCommand(prompt="add 1 and 2"))
    assert not failed.success
    again = LLMEngine(await quiet_bus(), provider=ScriptedProvider(), conversations=make_store())
    assert [m.content for m in again.conversations.get("default").messages] == ["first", "one"]
    await bus.stop()
    await again.bus.stop()


async def test_list_get_fork_and_delete(make_store: MakeStore) -> None:
    bus = await quiet_bus()
    engine = LLMEngine(
        bus, provider=ScriptedProvider(["a", "b", "c", "o", "d"]), conversations=make_store()
    )
    for prompt in ("one", "two", "three"):
        await engine.chat(prompt, conversation_id="main")
    await engine.chat("other", conversation_id="side")
    conversations = engine.conversations

    frame = conversations.list()
    assert list(frame.columns) == ["id", "turns", "messages", "tokens", "last_activity"]
    assert frame["id"].tolist() == ["side", "main"]  # newest activity first
    assert frame.set_index("id")["turns"].to_dict() == {"side": 1, "main": 3}
    assert frame.set_index("id")["messages"].to_dict() == {"side": 2, "main": 6}
    assert (frame["tokens"] > 0).all()
    assert isinstance(frame["last_activity"].dtype, pd.DatetimeTZDtype)

    fork = conversations.fork("main", at_turn=2)
    assert [m.content for m in conversations.get(fork).messages] == ["one", "a", "two", "b"]
    await engine.chat("branch", conversation_id=fork)
    assert [m.content for m in conversations.get(fork).messages][-2:] == ["branch", "d"]
    assert len(conversations.get("main").messages) == 6  # the original is untouched
    assert conversations.get(conversations.fork("main", at_turn=0, new_id="none")).messages == []
    assert conversations.delete("none")
    whole = await conversations.afork("main", new_id="copy")
    assert whole == "copy" and conversations.get("copy").turns == conversations.get("main").turns

    assert "side" in conversations
    assert conversations.delete("side") is True
    assert "side" not in conversations
    assert conversations.delete("side") is False
    assert sorted(conversations.ids()) == sorted(["main", fork, "copy"])
    with pytest.raises(ConversationNotFoundError, match="No conversation 'side'"):
        conversations.fork("side")
    await bus.stop()


async def test_the_async_forms_read_what_the_sync_forms_read(make_store: MakeStore) -> None:
    bus = await quiet_bus()
    engine = LLMEngine(bus, provider=ScriptedProvider(["a"]), conversations=make_store())
    await engine.chat("one")
    conversations = engine.conversations
    assert (await conversations.aget("default")).messages == conversations.get("default").messages
    assert (
        (await conversations.alist())
        .drop(columns="last_activity")
        .equals(conversations.list().drop(columns="last_activity"))
    )
    assert await conversations.aclear("default") is True
    assert conversations.get("default").messages == []
    assert await conversations.adelete("default") is True
    await bus.stop()


async def test_system_prompts_and_clearing_are_kept_in_the_store(make_store: MakeStore) -> None:
    bus = await quiet_bus()
    engine = LLMEngine(bus, provider=ScriptedProvider(["a", "b"]), conversations=make_store())
    await bus.execute(SetSystemPromptCommand(system_prompt="Be brief.", conversation_id="x"))
    await engine.chat("one", conversation_id="x")
    engine.conversations.get("y").system_prompt = "Be long."
    assert (await bus.execute(ClearConversationCommand(conversation_id="x"))).result is True

    again = LLMEngine(await quiet_bus(), provider=ScriptedProvider(), conversations=make_store())
    x, y = again.conversations.get("x"), again.conversations.get("y")
    assert (x.system_prompt, x.messages) == ("Be brief.", [])
    assert (y.system_prompt, y.messages) == ("Be long.", [])
    await bus.stop()
    await again.bus.stop()


async def test_a_conversation_keeps_the_system_prompt_it_began_with() -> None:
    store = MemoryConversationStore()
    bus = await quiet_bus()
    LLMEngine(bus, provider=ScriptedProvider(["a"]), system_prompt="Old.", conversations=store)
    await bus.execute(PromptCommand(prompt="one"))
    provider = ScriptedProvider(["b"])
    LLMEngine(bus, provider=provider, system_prompt="New.", conversations=store)
    await bus.execute(PromptCommand(prompt="two"))
    assert provider.requests[0].messages[0].content == "Old."
    await bus.stop()


async def test_sqlite_keeps_one_row_per_message_and_grows_linearly(tmp_path: Path) -> None:
    """500 offline turns in a window of 300 tokens: no context error, every row kept."""
    path = tmp_path / "long.db"
    bus = await quiet_bus()
    engine = LLMEngine(
        bus,
        model="offline",
        conversations=f"sqlite:///{path}",
        max_context_tokens=300,
        max_history=10_000,
    )
    sizes = {}
    for turn in range(1, 501):
        result = await bus.execute(PromptCommand(prompt=f"turn {turn} of a long chat"))
        assert result.success, result.error
        assert result.metadata["input_tokens"] <= 300
        if turn in (250, 500):
            with sqlite3.connect(path) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                sizes[turn] = path.stat().st_size
                assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (2 * turn,)
    await bus.stop()
    assert 1.6 < sizes[500] / sizes[250] < 2.4  # linear in messages, not in their square
    assert engine.conversations.list()["messages"].tolist() == [1000]


def test_the_write_ahead_log_stays_bounded_and_close_leaves_the_file_whole(
    tmp_path: Path,
) -> None:
    """2,000 turns: SQLite's own checkpoints keep the -wal file to a few MB; after close()
    the database file alone holds every message (a copy of it misses nothing)."""
    path = tmp_path / "chats.db"
    store = SQLiteConversationStore(path)
    turn = [
        ChatMessage(role="user", content="a question " * 20),
        ChatMessage(role="assistant", content="an answer " * 40),
    ]
    for _ in range(2_000):
        store.append_turn("long", turn, None)
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size < 8 * 2**20
    store.close()
    assert not wal.exists() or wal.stat().st_size == 0
    with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as alone:
        assert alone.execute("SELECT COUNT(*) FROM messages").fetchone() == (4_000,)


def test_a_store_setting_that_names_no_store_says_which_forms_exist() -> None:
    bus = MessageBus(log_dir=None)
    with pytest.raises(ConfigurationError, match=r"sqlite:///path/to/chats\.db"):
        LLMEngine(bus, model="offline", conversations="postgres://x")
    with pytest.raises(ConfigurationError, match="ConversationStore"):
        LLMEngine(bus, model="offline", conversations=42)  # type: ignore[arg-type]


def test_a_sqlite_url_with_a_query_string_is_refused_and_makes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bus = MessageBus(log_dir=None)
    with pytest.raises(ConfigurationError, match=r"has a query string \('\?mode=ro'\)"):
        LLMEngine(bus, model="offline", conversations="sqlite:///rel.db?mode=ro")
    with pytest.raises(ConfigurationError, match=r"give just the file, 'sqlite:///rel\.db'"):
        LLMEngine(bus, model="offline", conversations="sqlite:///rel.db?")
    assert list(tmp_path.iterdir()) == []


async def test_redis_conversations_need_a_connected_bus() -> None:
    bus = await quiet_bus()
    LLMEngine(bus, model="offline", conversations="redis")
    result = await bus.execute(PromptCommand(prompt="hi"))
    assert not result.success
    assert "bus.connect" in (result.error or "")
    await bus.stop()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not sqlite at all" * 100)
    store = SQLiteConversationStore(path)
    with pytest.raises(ConfigurationError, match="conversation store"):
        store.exists("x")


def test_two_sqlite_stores_on_one_file_see_each_others_turns(tmp_path: Path) -> None:
    """As two processes do: each keeps its parsed copy only while no one else wrote."""
    from llmgine.llm import ChatMessage

    one, two = (
        SQLiteConversationStore(tmp_path / "c.db"),
        SQLiteConversationStore(tmp_path / "c.db"),
    )

    def turn(text: str) -> list[ChatMessage]:
        return [ChatMessage(role="user", content=text), ChatMessage(role="assistant", content="ok")]

    one.append_turn("c", turn("from one"), "Sys.")
    assert one.load("c", 100) is not None  # one keeps a parsed copy
    two.append_turn("c", turn("from two"), None)
    seen = one.load("c", 100)
    assert seen is not None and seen.turns == [1, 1, 2, 2]
    assert one.load("c", 100) is not None
    two.append_turn("c", turn("two again"), None)
    one.append_turn("c", turn("one again"), None)
    loaded = one.load("c", 100)
    assert loaded is not None
    contents = [m.content for m in loaded.messages][::2]
    assert contents == ["from one", "from two", "two again", "one again"]
    assert loaded.turns == [1, 1, 2, 2, 3, 3, 4, 4]
    two.set_system_prompt("c", "New.")
    two.clear("c")
    again = one.load("c", 100)
    assert again is not None and (again.system_prompt, again.messages) == ("New.", [])
    one.close()
    two.close()


async def test_a_timed_out_turn_leaves_the_stored_conversation_as_it_was(tmp_path: Path) -> None:
    async def slow(seconds: int) -> str:
        """Take a while.

        Args:
            seconds: How long.
        """
        await asyncio.sleep(seconds)
        return "done"

    bus = await quiet_bus()
    provider = ScriptedProvider(["one", ScriptedProvider.call("slow", seconds=60)])
    store = f"sqlite:///{tmp_path / 'c.db'}"
    engine = LLMEngine(bus, provider=provider, tools=[slow], conversations=store)
    await engine.chat("first")
    result = await bus.execute(PromptCommand(prompt="be slow", timeout=0.5))
    assert not result.success and result.error_type == "ProviderTimeoutError"
    again = LLMEngine(await quiet_bus(), provider=ScriptedProvider(), conversations=store)
    assert [m.content for m in again.conversations.get("default").messages] == ["first", "one"]
    await bus.stop()
    await again.bus.stop()


@pytest.mark.timeout(30)
async def test_a_store_that_does_io_is_called_off_the_event_loop(tmp_path: Path) -> None:
    """Its load waits for the loop to do something else: on the loop it would never return."""
    released = threading.Event()

    class WaitingStore(SQLiteConversationStore):
        def load(
            self, conversation_id: str, last_messages: int | None
        ) -> StoredConversation | None:
            assert released.wait(20), "the load ran on the event loop"
            return super().load(conversation_id, last_messages)

    bus = await quiet_bus()
    engine = LLMEngine(
        bus, provider=ScriptedProvider(["a"]), conversations=WaitingStore(tmp_path / "c.db")
    )
    asyncio.get_running_loop().call_later(0.05, released.set)
    assert await engine.chat("hi") == "a"
    await bus.stop()


async def test_a_fork_never_overwrites_a_conversation(make_store: MakeStore) -> None:
    from llmgine.errors import ConfigurationError

    bus = await quiet_bus()
    engine = LLMEngine(bus, provider=ScriptedProvider(["a", "b"]), conversations=make_store())
    await engine.chat("one", conversation_id="a")
    await engine.chat("two", conversation_id="b")
    for taken in ("a", "b"):  # itself, or another one
        with pytest.raises(ConfigurationError, match="exists already"):
            engine.conversations.fork("a", new_id=taken)
        with pytest.raises(ConfigurationError, match="exists already"):
            await engine.conversations.afork("a", new_id=taken)
    assert [m.content for m in engine.conversations.get("a").messages] == ["one", "a"]
    assert [m.content for m in engine.conversations.get("b").messages] == ["two", "b"]
    await bus.stop()


async def test_a_fork_past_the_last_turn_is_refused_naming_the_range(
    make_store: MakeStore,
) -> None:
    from llmgine.errors import ConfigurationError

    bus = await quiet_bus()
    engine = LLMEngine(bus, model="offline", conversations=make_store())
    await engine.chat("one", conversation_id="a")
    await engine.chat("two", conversation_id="a")
    for at_turn in (3, 99):
        with pytest.raises(ConfigurationError, match="at_turn must be between 0 and 2"):
            engine.conversations.fork("a", at_turn=at_turn)
        with pytest.raises(ConfigurationError, match="at_turn must be between 0 and 2"):
            await engine.conversations.afork("a", at_turn=at_turn)
    assert engine.conversations.ids() == ["a"]  # nothing was copied
    copy = engine.conversations.fork("a", at_turn=2)
    assert len(engine.conversations.get(copy).messages) == 4
    await bus.stop()


@pytest.mark.parametrize("conversation_id", [None, 123, b"a"])
async def test_an_id_that_is_not_a_string_is_a_type_error(
    make_store: MakeStore, conversation_id: object
) -> None:
    bus = await quiet_bus()
    engine = LLMEngine(bus, model="offline", conversations=make_store())
    await engine.chat("one", conversation_id="a")
    conversations = engine.conversations
    with pytest.raises(TypeError, match="conversation_id must be a string"):
        conversations.get(conversation_id)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="conversation_id must be a string"):
        await conversations.aget(conversation_id)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="conversation_id must be a string"):
        conversations.fork(conversation_id)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="new_id must be a string"):
        await conversations.afork("a", new_id=conversation_id or 7)  # type: ignore[arg-type]
    await bus.stop()
