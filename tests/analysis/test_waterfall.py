"""The waterfall, as Phoenix draws a trace: depth, kinds, errors, tokens, hundreds of spans."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.colors import to_hex

from llmgine.analysis import SpansFrame, load_events, plot_waterfall, spans_frame
from llmgine.analysis.span_tree import CYCLE_NOTE, ERROR_COLOUR, KIND_COLOURS, trace_rows
from llmgine.analysis.span_view import waterfall_html
from llmgine.bus import MessageBus
from llmgine.llm import Completion, LLMEngine, ScriptedProvider, Usage
from llmgine.messages import Command
from llmgine.observability import SpanContext, TraceEvent, encode

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
    assert [label.split("  ")[1] for label in labels[2:5]] == [
        "ItemCommand #1",
        "ItemCommand #2",
        "ItemCommand #3",
    ]
    collapsed = rows[5]
    assert collapsed.collapsed == STEPS - 4
    assert collapsed.errors == 2  # items 101, 201 are hidden; 1 is shown
    assert collapsed.label.startswith(f"  … {STEPS - 4} more ItemCommand (#4-#{STEPS - 1})")
    assert "(2 failed)" in collapsed.label
    assert rows[6].label.startswith(f"  ItemCommand #{STEPS}")  # the last one
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


TRACE = "ab" * 16
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _span_log(path: Path, spans: list[tuple[str, str | None, str, dict[str, Any]]]) -> Path:
    """A log holding one ended span per (span id, parent id, name, attributes)."""
    lines = []
    for n, (span_id, parent, name, attributes) in enumerate(spans):
        start = T0 + timedelta(milliseconds=10 * n)
        end = TraceEvent(
            name=name,
            span_context=SpanContext(trace_id=TRACE, span_id=span_id, parent_span_id=parent),
            start_time=start,
            end_time=start + timedelta(milliseconds=5),
            status="OK",
            duration_ms=5.0,
            span_kind="CHAIN",
            attributes=attributes,
        )
        lines.append(encode("event", end, None))
    path.write_bytes(b"".join(lines))
    return path


def _id(n: int) -> str:
    return f"{n:016x}"


def test_parent_cycles_are_broken_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = _span_log(
        tmp_path / "cycles.jsonl",
        [
            (_id(1), None, "root", {}),
            (_id(2), _id(1), "child", {}),
            (_id(3), _id(4), "loop-a", {}),  # 3 -> 4 -> 3
            (_id(4), _id(3), "loop-b", {}),
            (_id(5), _id(4), "under-the-loop", {}),
            (_id(6), _id(6), "own-parent", {}),
        ],
    )
    spans = spans_frame(log)
    with caplog.at_level(logging.WARNING, logger="llmgine.analysis.span_tree"):
        rows = trace_rows(spans, TRACE)
    assert sorted(r.name for r in rows) == sorted(spans["name"])  # none lost, none twice
    noted = {r.name: r.depth for r in rows if r.note == CYCLE_NOTE}
    assert noted == {"loop-a": 0, "own-parent": 0}  # the earliest of each cycle is its root
    depths = {r.name: r.depth for r in rows}
    assert (depths["loop-b"], depths["under-the-loop"]) == (1, 2)
    assert any(f"({CYCLE_NOTE})" in r.label for r in rows)
    assert "form a cycle" in caplog.text
    assert "own-parent" in waterfall_html(spans)
    assert len(plot_waterfall(spans).texts) == 6


def test_a_very_deep_chain_of_spans_is_drawn_without_recursion(tmp_path: Path) -> None:
    depth = 3_000  # far past Python's recursion limit
    chain = [(_id(n + 1), _id(n) if n else None, f"step-{n}", {}) for n in range(depth)]
    spans = spans_frame(_span_log(tmp_path / "deep.jsonl", chain))
    rows = trace_rows(spans, TRACE)
    assert [r.depth for r in rows] == list(range(depth))
    deepest = rows[-1].label
    assert deepest.startswith(" " * 24 + f"[depth {depth - 1}] step-{depth - 1}")
    assert len(deepest) < 80  # the indent stops growing: the name stays readable
    shown = waterfall_html(spans)
    assert "step-199" in shown
    assert "2800 more rows" in shown
    last = plot_waterfall(spans, max_rows=80, page=(depth - 1) // 80)
    assert last.texts[-1].get_text().strip().startswith(f"[depth {depth - 1}]")


def test_rows_of_one_name_are_told_apart(tmp_path: Path) -> None:
    # A notebook's PromptCommand and the same command run for it in a worker (tutorial 08).
    log = _span_log(
        tmp_path / "remote.jsonl",
        [
            (_id(1), None, "PromptCommand", {"llmgine.command.type": "PromptCommand"}),
            (_id(2), _id(1), "PromptCommand", {"llmgine.remote.caller": "notebook-1234"}),
            (_id(3), _id(2), "chat offline", {}),
        ],
    )
    rows = trace_rows(spans_frame(log), TRACE)
    labels = [r.label.split("  ")[0 if r.depth == 0 else r.depth] for r in rows]
    assert labels == ["PromptCommand #1", "PromptCommand #2 worker", "chat offline"]
    assert len({r.label.strip().split("  ")[0] for r in rows}) == 3
