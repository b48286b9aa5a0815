"""``%%llmgine map DF``: the cell's body as a template over a frame, in a real IPython shell."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from counting_model import Counting
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from llmgine import LLMEngine, MessageBus
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import Completion, LLMRequest
from llmgine.notebook import MagicError, get_bus, set_engine

REVIEWS = """
import pandas as pd
from pydantic import BaseModel

class Verdict(BaseModel):
    label: str
    reason: str

reviews = pd.DataFrame(
    {"review": ["Lovely tea", "Arrived broken", "Fine"], "stars": [5, 1, 3]},
    index=["r1", "r2", "r3"],
)
"""


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``map`` sends ``cache=True``: its default cache file goes here, not the user's folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("LLMGINE_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def ip(shell: InteractiveShell) -> InteractiveShell:
    """The shell with a frame of reviews and a pydantic model in its namespace."""
    shell.run_cell("%llmgine start --quiet")
    assert shell.run_cell(REVIEWS).success
    return shell


def run(shell: InteractiveShell, cell: str) -> object:
    """Run ``cell`` as a notebook would; its result, or raise what it raised."""
    result = shell.run_cell(cell)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return result.result


def test_the_body_is_a_template_over_every_row_shown_and_kept(ip: InteractiveShell) -> None:
    shown = run(
        ip, "%%llmgine map reviews --into answers --no-progress\nReview: {review} ({stars}/5)\n"
    )
    assert isinstance(shown, pd.DataFrame)
    assert shown is ip.user_ns["answers"]
    assert list(shown.index) == ["r1", "r2", "r3"]
    assert shown["output"].str.startswith('You said: "Review: ').all()
    assert 'You said: "Review: Arrived broken (1/5)"' in shown.loc["r2", "output"]
    assert shown["error"].isna().all()
    assert list(shown["model"]) == ["offline"] * 3
    joined = run(ip, "reviews.join(answers)")
    assert isinstance(joined, pd.DataFrame)
    assert list(joined.columns[:3]) == ["review", "stars", "output"]


def test_without_into_the_answers_are_kept_as_df_mapped(ip: InteractiveShell) -> None:
    shown = run(ip, "%%llmgine map reviews --no-progress\nReview: {review}")
    assert ip.user_ns["reviews_mapped"] is shown


def test_the_template_keeps_braces_dollars_and_its_inner_lines(ip: InteractiveShell) -> None:
    ip.user_ns["HOME"] = "not me"
    shown = run(
        ip,
        '%%llmgine map reviews --no-progress\n\n  Costs $HOME?\n{review} as {{"json": 1}}\n\n',
    )
    assert isinstance(shown, pd.DataFrame)
    assert 'You said: "Costs $HOME?\nLovely tea as {"json": 1}"' in shown.loc["r1", "output"]


def test_output_type_from_the_notebook_gives_a_column_per_field(ip: InteractiveShell) -> None:
    shown = run(ip, "%%llmgine map reviews --output-type Verdict --no-progress\nReview: {review}")
    assert isinstance(shown, pd.DataFrame)
    assert list(shown.columns[:3]) == ["label", "reason", "error"]
    assert all(isinstance(value, str) for value in [*shown["label"], *shown["reason"]])
    assert shown["error"].isna().all()


def test_output_type_by_its_import_path(
    ip: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "shop_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "verdicts.py").write_text(
        "from pydantic import BaseModel\n\nclass Mood(BaseModel):\n    mood: str\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    shown = run(
        ip, "%%llmgine map reviews --output-type shop_models.verdicts.Mood --no-progress\n{review}"
    )
    assert isinstance(shown, pd.DataFrame)
    assert list(shown["mood"]) == ["offline"] * 3
    run(ip, "import shop_models.verdicts as verdicts")  # an attribute of a notebook name too
    again = run(ip, "%%llmgine map reviews --output-type verdicts.Mood --no-progress\n{review}")
    assert isinstance(again, pd.DataFrame)
    assert list(again["mood"]) == ["offline"] * 3
    sys.modules.pop("shop_models.verdicts", None)
    sys.modules.pop("shop_models", None)


def test_model_flag_chooses_the_model_of_every_row(ip: InteractiveShell) -> None:
    shown = run(ip, "%%llmgine map reviews --model offline:small --no-progress\n{review}")
    assert isinstance(shown, pd.DataFrame)
    assert list(shown["model"]) == ["small"] * 3  # as the log names it


class InFlight(Provider):
    """Answers after a short wait, counting the calls in flight at once."""

    name = "in-flight"

    def __init__(self) -> None:
        super().__init__("in-flight")
        self.now = 0
        self.most = 0

    async def complete(self, request: LLMRequest) -> Completion:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.05)
        finally:
            self.now -= 1
        return Completion(content="ok")


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_caps_the_rows_in_flight(ip: InteractiveShell, concurrency: int) -> None:
    model = InFlight()
    set_engine(LLMEngine(get_bus(), provider=model))
    run(ip, "many = pd.DataFrame({'n': range(9)})")
    shown = run(ip, f"%%llmgine map many --concurrency {concurrency} --no-progress\nsay {{n}}")
    assert isinstance(shown, pd.DataFrame)
    assert list(shown["output"]) == ["ok"] * 9
    assert model.most == concurrency


def test_a_second_run_sends_only_what_the_first_did_not_answer(ip: InteractiveShell) -> None:
    model = Counting()
    set_engine(LLMEngine(get_bus(), provider=model))
    first = run(ip, "%%llmgine map reviews --no-progress\nReview: {review}")
    assert model.calls == 3
    run(ip, "reviews.loc['r4'] = ['New one', 4]")
    second = run(ip, "%%llmgine map reviews --no-progress\nReview: {review}")
    assert isinstance(first, pd.DataFrame) and isinstance(second, pd.DataFrame)
    assert model.calls == 4  # only the new row was sent; the others came from the cache
    assert list(second["cached"]) == [True, True, True, False]
    assert list(second["output"]) == [*first["output"], "answer to Review: New one"]


class Slow(Provider):
    """Answers ``answer to <prompt>`` after a wait long enough to be interrupted in."""

    name = "slow"

    def __init__(self) -> None:
        super().__init__("slow-1")
        self.requests = 0
        self.third = threading.Event()
        """Set when the third request comes in."""

    async def complete(self, request: LLMRequest) -> Completion:
        self.requests += 1
        if self.requests == 3:
            self.third.set()
        await asyncio.sleep(0.3)
        return Completion(content=f"answer to {request.messages[-1].content}")


@pytest.mark.timeout(120)
def test_an_interrupted_cell_keeps_what_finished_and_a_rerun_sends_the_rest(
    ip: InteractiveShell,
) -> None:
    model = Slow()
    set_engine(LLMEngine(get_bus(), provider=model))
    run(ip, "many = pd.DataFrame({'n': range(6)})")

    def press_stop() -> None:  # what Ctrl-C or the kernel's stop button does, at the 3rd row
        model.third.wait()
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_stop, daemon=True)
    presser.start()
    shown = run(ip, "%%llmgine map many --concurrency 1 --into got --no-progress\nsay {n}")
    presser.join()
    assert isinstance(shown, pd.DataFrame)
    assert ip.user_ns["got"] is shown
    assert list(shown["error"].isna()) == [True, True, False, False, False, False]
    assert shown["error"].iloc[2].startswith("not run: interrupted")
    again = run(ip, "%%llmgine map many --concurrency 1 --into got --no-progress\nsay {n}")
    assert isinstance(again, pd.DataFrame)
    assert model.requests == 3 + 4  # the row in flight and the three never sent
    assert list(again["cached"]) == [True, True, False, False, False, False]
    assert list(again["output"]) == [f"answer to say {n}" for n in range(6)]


def test_a_failing_row_is_its_error_and_the_rest_still_run(ip: InteractiveShell) -> None:
    shown = run(ip, "%%llmgine map reviews --no-progress\n{stars:.1f} stars: {review}")
    assert isinstance(shown, pd.DataFrame)
    assert shown["error"].isna().all()
    run(ip, "reviews['stars'] = reviews['stars'].astype(object)")
    run(ip, "reviews.loc['r2', 'stars'] = 'one'")
    shown = run(ip, "%%llmgine map reviews --no-progress\n{stars:.1f} stars: {review}")
    assert isinstance(shown, pd.DataFrame)
    assert list(shown["error"].isna()) == [True, False, True]
    assert "stars" in shown.loc["r2", "error"] or "format" in shown.loc["r2", "error"]


def test_the_progress_bar_counts_the_rows(ip: InteractiveShell) -> None:
    with capture_output() as captured:
        run(ip, "%%llmgine map reviews\nReview: {review}")
    assert "3/3" in captured.stderr
    assert "errors=0" in captured.stderr


def test_help_lists_the_map_cell(ip: InteractiveShell) -> None:
    text = repr(run(ip, "%llmgine help"))
    assert "| `map DF [--model M] [--output-type T] [--concurrency N] [--into NAME]" in text
    assert "`%%llmgine map reviews --into labels`" in text


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%llmgine map reviews", "`map` is a cell magic: write `%%llmgine map DF`"),
        ("%%llmgine map reviews\n  \n", "the cell is empty: write the prompt for each row"),
        ("%%llmgine map\n{review}", "%llmgine map: the following arguments are required: DF"),
        ("%%llmgine map nope\n{review}", "name 'nope' is not defined in this notebook"),
        ("%%llmgine map Verdict\n{review}", "Verdict is a class, not a pandas DataFrame"),
        ("%%llmgine map reviews --bogus 1\n{review}", "unrecognized arguments: --bogus 1"),
        ("%%llmgine map reviews --concurrency many\n{r}", "--concurrency: invalid int value"),
        ("%%llmgine map reviews --concurrency 0\n{review}", "concurrency must be a whole number"),
        ("%%llmgine map reviews --into 2nd\n{review}", "--into needs a Python name"),
        ("%%llmgine map reviews --into class\n{review}", "--into needs a Python name"),
        ("%%llmgine map reviews\nAbout {title}", "title"),
        ("%%llmgine map reviews --output-type Nope\n{review}", "no such name in this notebook"),
        ("%%llmgine map reviews --output-type reviews\n{review}", "not a pydantic model"),
        ("%%llmgine map reviews --output-type pd.nope\n{review}", "pd has no attribute 'nope'"),
        ("%%llmgine map reviews --output-type no_pkg.M\n{review}", "cannot import no_pkg"),
        ("%%llmgine map reviews --output-type json.Nope\n{review}", "json has no attribute"),
        ("%%llmgine map reviews --output-type json.dumps\n{review}", "is a function, not a"),
        ("%%llmgine map reviews --output-type json.JSONDecoder\n{r}", "JSONDecoder is a class,"),
        ("%%llmgine map reviews --model 'x\n{review}", "no closing quotation"),
        ("%%llmgine map reviews --model nosuchprovider:x\n{review}", "Unknown model 'nosuch"),
        ("%%llmgine map reviews --output-type int\n{review}", "value: int` in a cell before"),
        ("%%llmgine map reviews --output-type float\n{review}", "for one float a row"),
    ],
)
def test_mistakes_are_one_readable_line_and_nothing_is_sent(
    ip: InteractiveShell, cell: str, message: str
) -> None:
    with capture_output() as captured:
        result = ip.run_cell(cell)
    assert isinstance(result.error_in_exec, MagicError)
    assert message in str(result.error_in_exec)
    assert captured.stdout.strip().splitlines() == [f"llmgine: {result.error_in_exec}"]
    assert "reviews_mapped" not in ip.user_ns
    assert ip.run_cell("1 + 1").result == 2


def test_an_unknown_model_fails_once_before_any_row_is_sent(ip: InteractiveShell) -> None:
    model = Counting()
    set_engine(LLMEngine(MessageBus(log_dir=None), provider=model))
    with capture_output() as captured:
        result = ip.run_cell("%%llmgine map reviews --model nosuchprovider:x\n{review}")
    assert isinstance(result.error_in_exec, MagicError)
    assert str(result.error_in_exec).startswith("Unknown model 'nosuchprovider:x'. Use one of:")
    assert captured.stdout.strip().splitlines() == [f"llmgine: {result.error_in_exec}"]
    assert model.calls == 0
    assert "reviews_mapped" not in ip.user_ns


def test_output_type_names_what_it_takes_for_a_builtin(ip: InteractiveShell) -> None:
    result = ip.run_cell("%%llmgine map reviews --output-type bool\n{review}")
    assert isinstance(result.error_in_exec, MagicError)
    assert str(result.error_in_exec) == (
        "--output-type bool is a class, not a pydantic model: --output-type takes a class "
        "deriving from pydantic.BaseModel, whose fields become the columns; for one bool a "
        "row, define `class Answer(BaseModel): value: bool` in a cell before and pass "
        "--output-type Answer (the column is value; without --output-type the answer is "
        "text, in the column output)"
    )


def test_a_missing_column_names_the_columns_there_are(ip: InteractiveShell) -> None:
    result = ip.run_cell("%%llmgine map reviews\nAbout {title}")
    assert isinstance(result.error_in_exec, MagicError)
    assert "review" in str(result.error_in_exec) and "stars" in str(result.error_in_exec)


def test_the_rows_run_on_the_notebooks_default_engine(ip: InteractiveShell) -> None:
    bus = MessageBus(log_dir=None)
    model = Counting()
    set_engine(LLMEngine(bus, provider=model))
    shown = run(ip, "%%llmgine map reviews --no-progress\n{review}")
    assert isinstance(shown, pd.DataFrame)
    assert model.calls == 3
    assert list(shown["model"]) == ["count-1"] * 3
    assert get_bus() is bus
