"""The df.llmgine accessor, the plots, and `python -m llmgine log`."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.axes import Axes

import llmgine.analysis  # registers the accessor
from llmgine.__main__ import main
from llmgine.analysis import (
    commands_frame,
    load_events,
    metrics_frame,
    plot_command_latency,
    plot_metric,
    plot_waterfall,
    spans_frame,
)


def test_accessor_gives_every_frame(log_path: Path) -> None:
    df = load_events(log_path)
    assert len(df.llmgine.metrics()) == 12
    assert len(df.llmgine.spans()) == 12
    assert len(df.llmgine.traces()) == 3
    assert len(df.llmgine.commands()) == 7
    assert len(df.llmgine.llm_calls()) == 3
    assert len(df.llmgine.events("ToolResultEvent")) == 1
    assert llmgine.analysis.LLMgineAccessor is type(df.llmgine)


def test_the_log_methods_on_another_frame_say_what_they_need() -> None:
    accessor = pd.DataFrame({"a": [1]}).llmgine  # any frame has it: map works on any frame
    for method in (accessor.spans, accessor.metrics, accessor.traces, accessor.llm_calls):
        with pytest.raises(AttributeError, match=r"load_events.*df\.llmgine\.map"):
            method()


def test_plots_render_to_files(log_path: Path, tmp_path: Path) -> None:
    df = load_events(log_path)
    spans = spans_frame(df)
    axes = [
        plot_waterfall(spans),
        plot_waterfall(spans, trace_id=str(spans["context.trace_id"].iloc[0])),
        plot_metric(metrics_frame(df), "rows"),
        plot_command_latency(commands_frame(df)),
        df.llmgine.plot_timeline(),
    ]
    for i, ax in enumerate(axes):
        assert isinstance(ax, Axes)
        out = tmp_path / f"plot{i}.png"
        ax.figure.savefig(out)
        assert out.stat().st_size > 1000
    labels = [t.get_text() for t in axes[1].texts]
    assert len(labels) == 6  # the pipeline trace: 6 spans
    assert labels[0].startswith("PipelineCommand")
    assert labels[1].startswith("  load")
    assert labels[2].startswith("    StepCommand")


@pytest.mark.parametrize(
    ("spread", "tick"),
    [
        (pd.Timedelta(milliseconds=300), r"\d\d:\d\d:\d\d\.\d{1,3}"),  # 20:53:00.45
        (pd.Timedelta(seconds=40), r"\d\d:\d\d:\d\d"),
        (pd.Timedelta(hours=2), r"\d\d:\d\d"),
        (pd.Timedelta(days=3), r"([A-Z][a-z]{2} \d\d|\d\d:\d\d)"),
    ],
)
def test_metric_times_read_as_times(spread: pd.Timedelta, tick: str) -> None:
    start = pd.Timestamp("2026-12-01 20:53:00.41", tz="UTC")
    times = [start + spread * i / 5 for i in range(6)]
    metrics = pd.DataFrame({"timestamp": times, "name": "m", "value": range(6), "unit": "ms"})
    ax = plot_metric(metrics, "m")
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels
    for label in labels:
        assert re.fullmatch(tick, label), labels  # never "53:00.410000"
    assert re.search(r"2026-12-0\d", ax.xaxis.get_offset_text().get_text())


def test_plots_explain_what_is_missing(log_path: Path) -> None:
    df = load_events(log_path)
    with pytest.raises(ValueError, match=r"No metric named 'nope'; the log has: .*rows"):
        plot_metric(metrics_frame(df), "nope")
    with pytest.raises(ValueError, match="No span belongs to trace 'x'"):
        plot_waterfall(spans_frame(df), trace_id="x")


def test_cli_log_summary(log_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", str(log_path)]) == 0
    out = capsys.readouterr().out
    assert "48 lines from" in out
    assert "0 skipped" in out
    assert "commands: 7, 85.7% succeeded" in out
    assert "StepCommand" in out
    assert "failed with ValueError: 1" in out
    assert "LLM calls: 3; tokens in 257, out 18" in out
    assert "24  TraceEvent" in out


def test_cli_log_summary_has_percentiles_tokens_and_a_time_window(
    log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    df = load_events(log_path)
    assert main(["log", str(log_path)]) == 0
    out = capsys.readouterr().out
    assert "p50 ms    p95 ms    p99 ms" in out
    assert "scripted:m-1  3 calls, 257 in, 18 out" in out
    later = df["timestamp"].max()
    assert main(["log", str(log_path), "--since", later.isoformat()]) == 0
    out = capsys.readouterr().out
    assert f"{(df['timestamp'] >= later).sum()} lines from" in out


def test_cli_log_reports_skipped_lines_and_missing_files(
    log_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = tmp_path / "d.jsonl"
    damaged.write_text(log_path.read_text() + "garbage\n")
    assert main(["log", str(damaged)]) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert main(["log", str(tmp_path / "nope.jsonl")]) == 2
    assert "llmgine: No log at" in capsys.readouterr().err
