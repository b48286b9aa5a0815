"""``%llmgine`` lines as a notebook user writes them: quotes, assignments, values refused early."""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from llmgine import LLMEngine, MessageBus, Price
from llmgine.notebook import MagicError, get_engine, run_sync, set_engine


def magic(shell: InteractiveShell, line: str) -> object:
    return shell.run_line_magic("llmgine", line)


def test_a_quoted_conversation_id_is_one_id_without_its_quotes(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    magic(shell, "model offline")
    with capture_output():
        magic(shell, 'chat --conversation "support desk" hello')
        magic(shell, "chat --conversation 'front desk' --max-tokens 50 'hi' there")
    assert set(magic(shell, "conversations")["id"]) == {"support desk", "front desk"}  # type: ignore[index]
    user = [m.content for m in get_engine().conversations.get("front desk").messages]
    assert user[0] == "'hi' there"  # the prompt is taken as written
    with pytest.raises(MagicError, match="--conversation: no closing quote"):
        magic(shell, 'chat --conversation "support desk hello')


def test_an_assigned_chat_ending_in_a_question_mark_is_sent(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    magic(shell, "model offline")
    with capture_output() as captured:
        result = shell.run_cell("r = %llmgine chat Is it sunny?")
    assert result.error_in_exec is None
    assert "r" in shell.user_ns
    assert 'You said: "Is it sunny?"' in captured.outputs[0].data["text/plain"]


def test_the_transformer_rewrites_assigned_lines_only(shell: InteractiveShell) -> None:
    from llmgine.notebook.magics import keep_question_marks

    assert keep_question_marks(["  r.x[0] = %llmgine chat why?\n"]) == [
        "  r.x[0] = get_ipython().run_line_magic('llmgine', 'chat why?')\n"
    ]
    untouched = ["x == %llmgine chat why?\n", "r = %llmgine chat hi\n", "r = %llmgine?\n"]
    assert keep_question_marks(untouched) == untouched


def test_a_chat_assigned_to_any_target_is_sent(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    magic(shell, "model offline")
    shell.run_cell("answers = {}")
    targets = ['answers["q1"]', "answers['q2']", "answers[f'{1}=']", "r: object"]
    for target in targets:
        with capture_output() as captured:
            result = shell.run_cell(f"{target} = %llmgine chat Is it sunny?", silent=True)
        assert result.error_in_exec is None, target
        assert 'You said: "Is it sunny?"' in captured.outputs[0].data["text/plain"], target
    assert set(shell.user_ns["answers"]) == {"q1", "q2", "1="}


def test_the_transformer_leaves_lines_that_assign_nothing(shell: InteractiveShell) -> None:
    from llmgine.notebook.magics import keep_question_marks

    untouched = [
        "f(x=%llmgine chat why?)\n",
        'd["a"] == %llmgine chat why?\n',
        "x += %llmgine chat why?\n",
    ]
    assert keep_question_marks(untouched) == untouched


def test_cache_on_redis_needs_a_connected_bus(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    with pytest.raises(MagicError, match="run `%llmgine connect URL` first"):
        magic(shell, "cache on redis")
    assert get_engine().policies.cache is None  # nothing was turned on


def test_conversations_name_their_cost_this_sessions_after_a_restart(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    prices = {"offline": Price(input_per_mtok=1000.0, output_per_mtok=1000.0)}
    store = f"sqlite:///{tmp_path / 'chats.db'}"

    def engine() -> LLMEngine:
        bus = MessageBus(log_dir=None, enable_console_traces=False, enable_console_metrics=False)
        run_sync(bus.start())
        return LLMEngine(bus, model="offline", prices=prices, conversations=store)

    before = set_engine(engine())  # the kernel before its restart
    for _ in range(2):
        run_sync(before.chat("Hello there", conversation_id="ada"))
    after = set_engine(engine())  # the kernel after it
    run_sync(after.chat("One more", conversation_id="ada"))
    listed = magic(shell, "conversations")
    row = listed.set_index("id").loc["ada"]  # type: ignore[attr-defined]
    assert row["turns"] == 3
    assert "cost_usd" not in listed.columns  # type: ignore[attr-defined]
    assert row["session_cost_usd"] == pytest.approx(after.spend.usd)
    run_sync(after.bus.stop())


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("chat --max-tokens -5 hi", "--max-tokens: Input should be greater than or equal to 1"),
        ("chat --max-tokens 0 hi", "--max-tokens: Input should be greater than or equal to 1"),
        ("chat --temperature nan hi", "--temperature: Input should be a finite number"),
        ("chat --temperature -1 hi", "--temperature: Input should be greater than or equal to 0"),
        ("register str on_ping", "str is a Python built-in, not a Command or Event class"),
        ("register PingCommand print", "print is a Python built-in, not a function"),
        ("tools 42", "'42' is not a name; give the name of a function of this notebook"),
        ("form int", "int is a Python built-in, not a Command class"),
        ("log --last -3", "--last takes a count of 0 or more, not -3"),
    ],
)
def test_values_refused_with_what_to_type(
    shell: InteractiveShell, line: str, expected: str
) -> None:
    magic(shell, "start --quiet")
    magic(shell, "model offline")
    with pytest.raises(MagicError) as info:
        magic(shell, line)
    assert expected in str(info.value)
