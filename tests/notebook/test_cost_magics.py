"""``%llmgine cost``, ``cache`` and ``conversations`` in a real IPython shell, offline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from counting_model import Counting
from IPython.core.interactiveshell import InteractiveShell

from llmgine import LLMEngine, Price, ScriptedProvider
from llmgine.errors import MagicError
from llmgine.llm import Completion, Usage
from llmgine.notebook import get_bus, get_runtime, set_engine
from llmgine.notebook.subcommands.costs import CostNote


def magic(shell: InteractiveShell, line: str) -> object:
    return shell.run_line_magic("llmgine", line)


class _Model(ScriptedProvider):
    """A script standing in for a real model, whose answers the call cache keeps."""

    cacheable = True


def _priced(*replies: str) -> LLMEngine:
    """The default engine, on a scripted model priced $1 in and $2 out per million tokens."""
    script = [
        Completion(content=reply, usage=Usage(input_tokens=1000, output_tokens=500))
        for reply in replies
    ]
    return set_engine(
        LLMEngine(
            get_bus(),
            provider=_Model(script, model="m-1"),
            prices={"m-1": Price(input_per_mtok=1.0, output_per_mtok=2.0)},
        )
    )


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMGINE_CACHE_DIR", str(tmp_path / "cache"))


def test_cost_says_so_before_any_call(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    note = magic(shell, "cost")
    assert isinstance(note, CostNote)
    assert repr(note).startswith("No LLM call yet in the log ")


def test_cost_shows_this_sessions_spend_by_model_and_conversation(
    shell: InteractiveShell,
) -> None:
    magic(shell, "start --quiet")
    _priced("one", "two", "three")
    magic(shell, "chat hello")
    magic(shell, "chat --conversation other hi")
    magic(shell, "chat --conversation other and again")
    note = magic(shell, "cost")
    assert isinstance(note, CostNote)
    assert note.usd == pytest.approx(0.006)  # 3 calls of 1000 in ($0.001) and 500 out ($0.001)
    assert note.by_model.loc["m-1", "calls"] == 3
    assert note.by_conversation["calls"].to_dict() == {"default": 1, "other": 2}
    assert note.by_conversation.loc["other", "cost_usd"] == pytest.approx(0.004)
    text = repr(note)
    assert text.startswith("**$0.006** for 3 LLM calls (from the log ")
    assert "| `m-1` | 3 | 0 | 4,500 | $0.006 |" in text
    assert "| `other` | 2 | 0 | 3,000 | $0.004 |" in text


def test_cache_on_answers_a_repeated_prompt_for_free_then_clears_and_goes_off(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    magic(shell, "start --quiet")
    engine = _priced("the answer")
    assert repr(magic(shell, "cache stats")).startswith("the cache is off")
    note = magic(shell, "cache on")
    assert engine.policies.cache is not None
    assert engine.policies.cache.path == tmp_path / "cache" / "calls.sqlite3"
    assert "cache on: a prompt asked before is answered from" in repr(note)
    magic(shell, "chat --conversation a the same question")
    magic(shell, "chat --conversation b the same question")  # a hit: the script has one reply
    stats = repr(magic(shell, "cache stats"))
    assert "1 cached answer (" in stats and "1 hits, 1 misses (50% hit rate)" in stats
    cost = magic(shell, "cost")
    assert isinstance(cost, CostNote)
    assert "1 answered by the cache, which saved $0.002" in repr(cost)
    assert cost.by_conversation.loc["b", "cached_calls"] == 1
    assert repr(magic(shell, "cache clear")).startswith("removed 1 cached answer from ")
    assert repr(magic(shell, "cache off")).startswith("cache off: every prompt asks the model")
    assert engine.policies.cache is None
    assert repr(magic(shell, "cache off")) == "the cache is already off"


def test_cache_stats_clear_and_off_cover_the_default_file_map_uses(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    magic(shell, "start --quiet")
    model = Counting()
    set_engine(LLMEngine(get_bus(), provider=model))  # no cache of its own
    shell.user_ns["df"] = pd.DataFrame({"review": ["good", "bad"]})

    def cached() -> list[bool]:
        shell.run_cell_magic("llmgine", "map df --into out --no-progress", "Classify {review}")
        return [bool(c) for c in shell.user_ns["out"]["cached"]]

    assert "(none yet)" in repr(magic(shell, "cache stats"))
    assert cached() == [False, False] and cached() == [True, True]
    stats = repr(magic(shell, "cache stats"))
    assert "`map` rows are answered from the default file" in stats
    assert str(tmp_path / "cache" / "calls.sqlite3") in stats and "2 cached answers" in stats
    assert repr(magic(shell, "cache clear")).startswith("removed 2 cached answers from ")
    assert cached() == [False, False] and model.calls == 4  # asked again, not from memory
    assert repr(magic(shell, "cache off")).startswith("cache off: every prompt asks the model")
    assert cached() == [False, False] and model.calls == 6
    assert repr(magic(shell, "cache stats")).startswith("the cache is off (`map` rows too)")
    assert repr(magic(shell, "cache off")) == "the cache is already off"


def test_the_cache_and_prices_stay_when_the_bus_is_replaced(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    engine = _priced("one")
    magic(shell, "cache on")
    cache = engine.policies.cache
    magic(shell, "start --log-file second.jsonl --quiet")
    replaced = get_runtime().get_engine()
    assert replaced is not engine and replaced.bus is get_bus()
    assert replaced.policies.cache is cache
    assert replaced.policies.prices.overrides == engine.policies.prices.overrides


def test_cache_off_stays_off_for_map_when_the_bus_is_replaced(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    get_runtime().get_engine()
    magic(shell, "cache off")
    magic(shell, "start --log-file second.jsonl --quiet")
    replaced = get_runtime().get_engine()
    assert replaced.bus is get_bus()
    assert replaced.policies.default_cache_on is False  # map rows still ask the model


def test_set_engine_makes_an_engine_and_its_bus_the_defaults(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    from llmgine import MessageBus
    from llmgine.notebook import run_sync
    from llmgine.notebook.widgets import ChatWidget

    own = MessageBus(log_dir=tmp_path / "own")
    run_sync(own.start())
    panel = magic(shell, "ui")
    assert isinstance(panel, ChatWidget)
    before = get_bus()
    engine = LLMEngine(own, model="offline")
    assert set_engine(engine) is engine
    assert get_bus() is own and get_runtime().get_engine() is engine
    assert not before.is_running  # replaced, as `%llmgine start` replaces it
    assert panel.engine is engine  # an open panel follows
    panel.close()  # the shell's teardown stops the default bus, now `own`


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("cache frob", "usage: %llmgine cache on [PATH|redis] | off | clear | stats"),
        ("cache off now", "usage: %llmgine cache"),
        ("cache on a b", "usage: %llmgine cache"),
        ("conversations use", "usage: %llmgine conversations [use ID | new [ID]]"),
        ("conversations use nope", "no conversation 'nope' is stored"),
        ("conversations frob", "usage: %llmgine conversations"),
    ],
)
def test_cost_cache_and_conversation_mistakes_are_one_line(
    shell: InteractiveShell, line: str, expected: str
) -> None:
    magic(shell, "start --quiet")
    with pytest.raises(MagicError, match=expected.replace("[", r"\[").replace("|", r"\|")):
        magic(shell, line)


def test_conversations_lists_and_picks_the_one_chat_continues(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    engine = _priced("one", "two", "three")
    magic(shell, "chat hello")
    magic(shell, "chat --conversation other hi")
    listed = magic(shell, "conversations")
    assert isinstance(listed, pd.DataFrame)
    assert set(listed["id"]) == {"default", "other"}
    assert listed.set_index("id")["current"].to_dict() == {"default": True, "other": False}
    assert listed.set_index("id")["session_cost_usd"].to_dict() == pytest.approx(
        {"default": 0.002, "other": 0.002}
    )
    note = magic(shell, "conversations use other")
    assert repr(note) == (
        "`%llmgine chat` and new chat panels continue conversation `other` (1 turn so far)"
    )
    magic(shell, "chat and again")  # continues "other"
    assert [m.content for m in engine.conversations.get("other").messages if m.role == "user"] == [
        "hi",
        "and again",
    ]
    assert repr(magic(shell, "conversations new fresh")) == (
        "`%llmgine chat` and new chat panels start conversation `fresh`"
    )
    assert get_runtime().conversation_id == "fresh"
    panel = magic(shell, "ui")
    assert panel.conversation_id == "fresh"  # type: ignore[attr-defined]
    with pytest.raises(MagicError, match="conversation 'other' exists"):
        magic(shell, "conversations new other")


def test_cost_without_a_log_reads_the_engines_spend(shell: InteractiveShell) -> None:
    magic(shell, "start --log-dir none --quiet")
    _priced("one", "two")
    magic(shell, "chat hello")
    magic(shell, "chat --conversation other hi")
    note = magic(shell, "cost")
    assert isinstance(note, CostNote)
    assert repr(note).startswith("**$0.004** for 2 LLM calls (from the default engine")
    assert note.by_conversation["calls"].to_dict() == {"default": 1, "other": 1}


class _Unpriced(ScriptedProvider):
    """A provider genai-prices does not know: its calls' price is unknown."""

    name = "my-provider"
    cacheable = True  # stands in for a real model, whose answers the cache keeps


@pytest.mark.parametrize("log_dir", ["", "--log-dir none "])
def test_cost_of_unknown_price_is_unknown_never_0_even_with_a_cache_hit(
    shell: InteractiveShell, log_dir: str
) -> None:
    magic(shell, f"start {log_dir}--quiet")
    answer = Completion(content="one", usage=Usage(input_tokens=1000, output_tokens=500))
    set_engine(LLMEngine(get_bus(), provider=_Unpriced([answer], model="mystery"), cache=True))
    magic(shell, "chat hello")
    magic(shell, "chat --conversation other hello")  # the same request: a cache hit
    note = magic(shell, "cost")
    assert isinstance(note, CostNote)
    assert note.usd is None
    assert pd.isna(note.by_model.loc["mystery", "cost_usd"])  # its one call sent: unknown
    assert note.by_conversation.loc["other", "cost_usd"] == 0.0  # a hit spent nothing
    assert pd.isna(note.by_conversation.loc["other", "saved_usd"])  # what it saved: unknown
    text = repr(note)
    assert text.startswith("**price unknown** for 2 LLM calls, 1 of them of unknown price")
    assert "answered by the cache, which saved price unknown" in text
    assert "| `mystery` | 2 | 1 | 1,500 | price unknown (saved price unknown) |" in text


def test_cache_off_works_when_the_default_cache_folder_cannot_be_made(
    shell: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "notes.txt").write_text("a file")
    monkeypatch.setenv("LLMGINE_CACHE_DIR", str(tmp_path / "notes.txt" / "cache"))  # under a file
    magic(shell, "start --quiet")
    stats = repr(magic(shell, "cache stats"))
    assert "cannot use the default cache file" in stats and "notes.txt" in stats
    assert repr(magic(shell, "cache off")).startswith("cache off: every prompt asks the model")
    assert get_runtime().get_engine().policies.default_cache_on is False
    assert repr(magic(shell, "cache stats")).startswith("the cache is off (`map` rows too)")


def test_cost_counts_map_rows_the_cache_answered_before_sending_them(
    shell: InteractiveShell,
) -> None:
    magic(shell, "start --quiet")
    engine = _priced("one", "two", "three", "four", "five")
    frame = pd.DataFrame({"review": [f"review {i}" for i in range(5)]})
    shell.user_ns["df"] = frame
    shell.run_cell_magic("llmgine", "map df --into first --no-progress", "Classify {review}")
    shell.run_cell_magic("llmgine", "map df --into again --no-progress", "Classify {review}")
    assert shell.user_ns["again"]["cached"].all()
    note = magic(shell, "cost")
    assert isinstance(note, CostNote)
    spend = engine.spend.to_dict()
    assert int(note.calls["calls"].sum()) == spend["calls"] == 10
    assert int(note.calls["cached_calls"].sum()) == spend["cached_calls"] == 5
    assert float(note.calls["saved_usd"].sum()) == pytest.approx(spend["saved_usd"])
    assert spend["saved_usd"] == pytest.approx(5 * 0.002)
    assert "5 answered by the cache, which saved $0.01" in repr(note)


def test_cost_after_a_maps_first_run_and_with_unpriced_cached_rows(
    shell: InteractiveShell,
) -> None:
    magic(shell, "start --quiet")
    model = Counting()
    engine = set_engine(LLMEngine(get_bus(), provider=model))  # no price: cost unknown
    shell.user_ns["df"] = pd.DataFrame({"review": ["good", "bad", "fine"]})
    shell.run_cell_magic("llmgine", "map df --into first --no-progress", "Classify {review}")
    note = magic(shell, "cost")  # every row missed the cache: its spans saved nothing
    assert isinstance(note, CostNote)
    assert int(note.calls["calls"].sum()) == 3 and int(note.calls["cached_calls"].sum()) == 0
    shell.run_cell_magic("llmgine", "map df --into again --no-progress", "Classify {review}")
    note = magic(shell, "cost")
    assert isinstance(note, CostNote)
    assert int(note.calls["cached_calls"].sum()) == engine.spend.to_dict()["cached_calls"] == 3
    assert note.by_model["saved_usd"].isna().all()  # what unpriced rows saved is unknown
    assert model.calls == 3
