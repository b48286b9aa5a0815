"""The conversations= setting and fork's at_turn: clear errors, no secret in them, stable paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmgine.bus import MessageBus
from llmgine.errors import ConfigurationError
from llmgine.llm import LLMEngine, SQLiteConversationStore

pytestmark = pytest.mark.timeout(120)


async def quiet_bus() -> MessageBus:
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    await bus.start()
    return bus


@pytest.mark.parametrize(
    "setting",
    [
        "postgresql://bob:hunter2@db.example.com/chats",
        "redis://:hunter2@127.0.0.1:6379/0",
        "https://example.com/chats?access_token=hunter2",
    ],
)
def test_a_setting_with_a_password_is_refused_without_repeating_it(setting: str) -> None:
    with pytest.raises(ConfigurationError, match="is not a store") as error:
        LLMEngine(MessageBus(log_dir=None), model="offline", conversations=setting)
    assert "hunter2" not in str(error.value)
    assert "***" in str(error.value)


def test_an_empty_sqlite_path_says_to_name_a_file() -> None:
    with pytest.raises(ConfigurationError, match=r"names no file.*sqlite:///chats\.db"):
        LLMEngine(MessageBus(log_dir=None), model="offline", conversations="sqlite:///")


def test_a_sqlite_path_under_a_file_is_refused_when_the_store_is_made(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    with pytest.raises(ConfigurationError, match=r"notes\.txt, which is a file, not a folder"):
        LLMEngine(
            MessageBus(log_dir=None),
            model="offline",
            conversations=f"sqlite:///{tmp_path}/notes.txt/inner/chats.db",
        )


def test_a_sqlite_path_that_is_a_folder_is_refused_when_the_store_is_made(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigurationError, match="is a folder: give a file in it"):
        SQLiteConversationStore(tmp_path)


async def test_a_relative_sqlite_path_stays_where_it_was_when_the_folder_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    bus = await quiet_bus()
    engine = LLMEngine(bus, model="offline", conversations="sqlite:///chats.db")
    await engine.chat("My name is Ada.", conversation_id="ada")
    monkeypatch.chdir(tmp_path / "b")  # as a notebook's %cd
    assert len(engine.conversations.get("ada").messages) == 2  # this thread connects now
    assert engine.conversations.list()["id"].tolist() == ["ada"]
    await engine.chat("What is my name?", conversation_id="ada")
    assert len((await engine.conversations.aget("ada")).messages) == 4
    await bus.stop()
    assert (tmp_path / "a" / "chats.db").is_file()
    assert not list((tmp_path / "b").iterdir())


@pytest.mark.parametrize("at_turn", [1.5, "2", True, [1]])
async def test_fork_at_a_turn_that_is_not_a_whole_number_is_a_type_error(
    at_turn: object,
) -> None:
    bus = await quiet_bus()
    engine = LLMEngine(bus, model="offline")
    await engine.chat("one", conversation_id="c")
    with pytest.raises(TypeError, match="at_turn must be a whole number of turns"):
        engine.conversations.fork("c", at_turn)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="at_turn must be a whole number of turns"):
        await engine.conversations.afork("c", at_turn)  # type: ignore[arg-type]
    assert engine.conversations.ids() == ["c"]  # nothing was copied
    with pytest.raises(ConfigurationError, match="at_turn must be 0 or more"):
        engine.conversations.fork("c", -1)
    await bus.stop()


async def test_the_memory_store_lists_numbers_and_forks_the_turns_it_kept_alike() -> None:
    bus = await quiet_bus()
    engine = LLMEngine(bus, model="offline", max_history=4)  # two turns kept in memory
    for i in range(5):
        await engine.chat(f"m{i}", conversation_id="c")
    conversations = engine.conversations
    assert conversations.list().set_index("id")["turns"].to_dict() == {"c": 2}
    assert conversations.get("c").turns == [1, 1, 2, 2]  # numbered from the oldest kept

    def prompts(at_turn: int | None) -> list[str | None]:
        fork = conversations.get(conversations.fork("c", at_turn))
        return [m.content for m in fork.messages if m.role == "user"]

    assert prompts(0) == []
    assert prompts(1) == ["m3"]
    assert prompts(2) == ["m3", "m4"]
    with pytest.raises(ConfigurationError, match="at_turn must be between 0 and 2"):
        prompts(3)  # past the turns kept: refused, not a silent copy of them all
    assert prompts(None) == ["m3", "m4"]
    await bus.stop()


def test_a_file_put_where_the_stores_folder_goes_is_a_clear_error_at_first_use(
    tmp_path: Path,
) -> None:
    store = SQLiteConversationStore(tmp_path / "sub" / "chats.db")
    (tmp_path / "sub").write_text("made after the store")
    with pytest.raises(ConfigurationError, match=r"Cannot use .*sub/chats\.db as a conversation"):
        store.exists("x")
