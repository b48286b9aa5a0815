"""The original README's promise, in the project's own words: the calls it showed keep working.

The original README (the design's seed) showed these imports, this constructor,
``start()``, handler registration, a metric and a custom span published by hand,
and ``stop()``. This test makes the same calls; it reads no file outside the project.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest


async def test_the_original_readme_calls_keep_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    from llmgine.bus import MessageBus
    from llmgine.messages.commands import YourCommand
    from llmgine.messages.events import YourEvent
    from llmgine.observability import Metric, MetricEvent, SpanContext, TraceEvent

    message_bus = MessageBus(
        log_dir="logs",
        log_filename="app_events.jsonl",
        enable_console_metrics=True,
        enable_console_traces=True,
    )
    await message_bus.start()
    assert message_bus.is_running

    heard: list[YourEvent] = []
    message_bus.register_command_handler(YourCommand, lambda command: "done")
    message_bus.register_event_handler(YourEvent, heard.append)
    result = await message_bus.execute(YourCommand())
    await message_bus.publish(YourEvent())

    await message_bus.publish(MetricEvent(metrics=[Metric(name="files_processed", value=10)]))

    trace_id = "custom_trace_1"
    span_id = "custom_span_1"
    span_context = SpanContext(trace_id=trace_id, span_id=span_id)
    await message_bus.publish(
        TraceEvent(
            name="Custom Operation Start",
            span_context=span_context,
            start_time=datetime.now().isoformat(),  # type: ignore[arg-type]
        )
    )
    await message_bus.publish(
        TraceEvent(
            name="Custom Operation End",
            span_context=span_context,
            end_time=datetime.now().isoformat(),  # type: ignore[arg-type]
            status="OK",
        )
    )
    await message_bus.stop()

    assert result.success and result.result == "done"
    assert len(heard) == 1
    lines = [
        json.loads(x) for x in (tmp_path / "logs" / "app_events.jsonl").read_text().splitlines()
    ]
    metrics = [line["data"] for line in lines if line["type"] == "MetricEvent"]
    assert metrics == [
        {"metrics": [{"name": "files_processed", "value": 10, "unit": None, "tags": {}}]}
    ]
    spans = [line["data"] for line in lines if line["type"] == "TraceEvent"]
    custom = [s for s in spans if s["span_context"]["trace_id"] == "custom_trace_1"]
    assert [s["name"] for s in custom] == ["Custom Operation Start", "Custom Operation End"]
    assert custom[1]["status"] == "OK"
    assert {line["type"] for line in lines} >= {"YourCommand", "YourEvent", "CommandResultEvent"}
    out = capsys.readouterr().out
    assert "[metric] files_processed=10" in out
    assert "[span] Custom Operation End OK" in out
