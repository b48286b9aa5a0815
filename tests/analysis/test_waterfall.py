"""The waterfall, as Phoenix draws a trace: depth, kinds, errors, tokens, hundreds of spans."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from matplotlib.colors import to_hex

from llmgine.analysis import SpansFrame, load_events, plot_waterfall, spans_frame
from llmgine.analysis.span_tree import ERROR_COLOUR, KIND_COLOURS, trace_rows
from llmgine.bus import MessageBus
from llmgine.llm import Completion, LLMEngine, ScriptedProvider, Usage
from llmgine.messages import Command

STEPS = 300


class BatchCommand(Command):
    steps: int


class ItemCommand(Command):
    n: int


async def _record(log_dir: Path) -> Path:
    bus = MessageBus(
        log_dir=log_dir,
        log_filename="big.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
    )
    engine = LLMEngine(
        bus,
        provider=ScriptedProvider(
            [Completion(content="ok", usage=Usage(input_tokens=1234, output_tokens=56))],
            model="m-1",
        ),
    )

    def item(cmd: ItemCommand) -> int:
        if cmd.n % 100 == 1:
            raise ValueError(f"item {cmd.n} is broken")
        return cmd.n

    async def batch(cmd: BatchCommand) -> None:
        async with bus.span("prepare"):
            pass
        for n in range(cmd.steps):
            await bus.execute(ItemCommand(n=n))
        await engine.chat("sum it up")

    bus.register_command_handler(ItemCommand, item)
    bus.register_command_handler(BatchCommand, batch)
    async with bus:
        await bus.execute(BatchCommand(steps=STEPS))
    assert bus.log_path is not None
    return bus.log_path


@pytest.fixture(scope="module")
def spans(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    import asyncio

    path = asyncio.run(_record(tmp_path_factory.mktemp("waterfall")))
    return spans_frame(load_events(path))


def test_rows_collapse_a_long_run_of_children(spans: pd.DataFrame) -> None:
    assert len(spans) == 1 + 1 + STEPS + 2  # batch, prepare, items, prompt + LLM call
    rows = trace_rows(spans, str(spans["context.trace_id"].iloc[0]))
    labels = [r.label for r in rows]
    assert labels[0].startswith("BatchCommand")
    assert labels[1].startswith("  prepare")
    assert [label.split("  ")[1] for label in labels[2:5]] == ["ItemCommand"] * 3
    collapsed = rows[5]
    assert collapsed.collapsed == STEPS - 4
    assert collapsed.errors == 2  # items 101, 201 are hidden; 1 is shown
    assert collapsed.label.startswith(f"  … {STEPS - 4} more ItemCommand")
    assert "(2 failed)" in collapsed.label
    assert rows[6].label.startswith("  ItemCommand")  # the last one
    assert len(rows) == 9  # legible: not 304 rows
    llm = next(r for r in rows if r.kind == "LLM")
    assert llm.depth == 2
    assert "1,234 → 56 tokens" in llm.label
    failed = next(r for r in rows if r.status == "ERROR" and not r.collapsed)
    assert "ERROR: ValueError: item 1 is broken" in failed.label


def test_plot_colours_by_kind_and_marks_errors_red(spans: pd.DataFrame) -> None:
    ax = plot_waterfall(spans)
    labels = [t.get_text() for t in ax.texts]
    assert len(labels) == 9
    colours = {
        label.strip().split("  ")[0]: to_hex(bar.get_facecolor())
        for label, bar in zip(labels, ax.patches, strict=False)
    }
    assert colours["BatchCommand"] == KIND_COLOURS["command"]
    assert colours["prepare"] == KIND_COLOURS["custom"]
    assert colours["chat m-1"] == KIND_COLOURS["LLM"]
    error_text = next(t for t in ax.texts if "item 1 is broken" in t.get_text())
    assert to_hex(error_text.get_color()) == "#b00020"
    error_bar = ax.patches[labels.index(error_text.get_text())]
    assert to_hex(error_bar.get_facecolor()) == ERROR_COLOUR
    assert "304 spans" in ax.get_title(loc="left")


def test_plot_pages_through_a_long_trace(spans: pd.DataFrame) -> None:
    trace = str(spans["context.trace_id"].iloc[0])
    first = plot_waterfall(spans, trace, max_rows=4)
    third = plot_waterfall(spans, trace, max_rows=4, page=2)
    assert len(first.texts) == 4
    assert len(third.texts) == 1
    assert "page 3 of 3" in third.get_title(loc="left")
    with pytest.raises(ValueError, match="3 page"):
        plot_waterfall(spans, trace, max_rows=4, page=3)


def test_spans_frame_for_notebooks_shows_waterfalls(spans: pd.DataFrame) -> None:
    view = SpansFrame(spans)
    assert len(view) == len(spans)
    assert type(view[view["status_code"] == "ERROR"]) is pd.DataFrame
    page = view._repr_html_()
    assert page.count("<tr") == 9
    assert f"… {STEPS - 4} more ItemCommand" in page
    assert "ERROR: ValueError: item 1 is broken" in page
    assert "1,234 → 56 tokens" in page
    assert "data-kind='LLM'" in page
    assert "<script" not in page
    hostile = spans.copy()
    hostile["name"] = "<script>alert(1)</script>"
    assert "<script>" not in SpansFrame(hostile)._repr_html_()
    assert "no spans" in SpansFrame(spans.iloc[0:0])._repr_html_()
