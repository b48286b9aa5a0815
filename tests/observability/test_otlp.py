"""OTLPExporter: llmgine spans as OpenTelemetry spans, live from the bus and replayed from a log."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from llmgine.analysis import load_events, spans_frame
from llmgine.bus import MessageBus
from llmgine.llm import Completion, LLMEngine, ScriptedProvider, ToolCall, Usage
from llmgine.messages import Command
from llmgine.observability.otlp import OTLPExporter, redact_url


class WorkCommand(Command):
    fail: bool = False


def double(x: int) -> int:
    """Double a number.

    Args:
        x: The number.
    """
    return 2 * x


async def record_run(bus: MessageBus) -> None:
    """Commands (one failing, one with a custom span) and an LLM call with a tool."""

    async def work(cmd: WorkCommand) -> str:
        async with bus.span("load", rows=3):
            if cmd.fail:
                raise ValueError("no rows today")
        return "done"

    bus.register_command_handler(WorkCommand, work)
    provider = ScriptedProvider(
        [
            Completion(
                tool_calls=[ToolCall(id="c1", name="double", arguments='{"x": 21}')],
                finish_reason="tool_calls",
                usage=Usage(input_tokens=100, output_tokens=10),
            ),
            Completion(
                content="42", finish_reason="stop", usage=Usage(input_tokens=150, output_tokens=5)
            ),
        ],
        model="m-1",
    )
    engine = LLMEngine(bus, provider=provider, tools=[double])
    async with bus:
        await bus.execute(WorkCommand())
        await bus.execute(WorkCommand(fail=True))
        await engine.chat("double 21")


def quiet_bus(tmp_path: Path, *sinks: Any) -> MessageBus:
    return MessageBus(
        log_dir=tmp_path,
        log_filename="run.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
        sinks=list(sinks),
    )


def by_id(spans: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    out = {}
    for span in spans:
        assert span.context is not None
        out[f"{span.context.span_id:016x}"] = span
    return out


def assert_same_as_log(spans: Sequence[ReadableSpan], log: Path) -> None:
    frame = spans_frame(load_events(log))
    exported = by_id(spans)
    assert set(exported) == set(frame.index)
    assert len(frame) == 8  # 2 commands + 2 loads, the prompt, 2 LLM calls, 1 tool
    for span_id, row in frame.iterrows():
        span = exported[str(span_id)]
        assert span.context is not None
        assert span.name == row["name"]
        assert f"{span.context.trace_id:032x}" == row["context.trace_id"]
        parent = None if span.parent is None else f"{span.parent.span_id:016x}"
        assert parent == (row["parent_id"] if isinstance(row["parent_id"], str) else None)
        assert span.status.status_code.name == row["status_code"]
        assert span.start_time == row["start_time"].value  # nanoseconds, microsecond precision
        assert span.end_time == row["end_time"].value
        attributes = dict(span.attributes or {})
        kind = {"LLM": "LLM", "TOOL": "TOOL"}.get(row["span_kind"], "CHAIN")
        assert attributes["openinference.span.kind"] == kind
        if row["span_kind"] == "LLM":
            prompt = row["attributes.gen_ai.usage.input_tokens"]
            completion = row["attributes.gen_ai.usage.output_tokens"]
            assert attributes["llm.token_count.prompt"] == prompt
            assert attributes["gen_ai.usage.input_tokens"] == prompt
            assert attributes["llm.token_count.total"] == prompt + completion
            assert attributes["llm.model_name"] == "m-1"
            assert attributes["input.value"] == "double 21"
    llm = [s for s in spans if (s.attributes or {}).get("openinference.span.kind") == "LLM"]
    assert [(s.attributes or {}).get("output.value") for s in llm][1] == "42"
    tool = next(s for s in spans if (s.attributes or {}).get("tool.name") == "double")
    assert (tool.attributes or {})["input.value"] == '{"x": 21}'
    assert (tool.attributes or {})["output.value"] == "42"
    failed = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    assert sorted(s.name for s in failed) == ["WorkCommand", "load"]
    for span in failed:
        assert span.status.description == "ValueError: no rows today"
        (event,) = span.events
        assert event.name == "exception"
        assert (event.attributes or {})["exception.type"] == "ValueError"
        assert (event.attributes or {})["exception.message"] == "no rows today"
    command = next(s for s in failed if s.name == "WorkCommand")
    assert "Traceback" in str((command.events[0].attributes or {})["exception.stacktrace"])


async def test_live_spans_match_the_log(tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    exporter = OTLPExporter("http://127.0.0.1:1", span_exporter=memory)
    bus = quiet_bus(tmp_path, exporter)
    await record_run(bus)  # stop() closes the sinks: the exporter delivers what it holds
    assert bus.log_path is not None
    assert_same_as_log(memory.get_finished_spans(), bus.log_path)
    assert exporter.stats.exported == 8
    assert (exporter.stats.dropped, exporter.stats.failed, exporter.stats.open_spans) == (0, 0, 0)


async def test_a_recorded_log_replays_to_the_same_spans(tmp_path: Path) -> None:
    bus = quiet_bus(tmp_path)
    await record_run(bus)
    assert bus.log_path is not None
    memory = InMemorySpanExporter()
    exporter = OTLPExporter("http://127.0.0.1:1", span_exporter=memory)
    lines = bus.log_path.read_bytes().splitlines()
    assert exporter.export_lines([*lines, b"not json", b"[1]"]) == 8
    assert_same_as_log(memory.get_finished_spans(), bus.log_path)


async def test_the_exporter_works_again_after_the_bus_restarts(tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    exporter = OTLPExporter("http://127.0.0.1:1", span_exporter=memory)
    bus = quiet_bus(tmp_path, exporter)
    bus.register_command_handler(WorkCommand, lambda c: "ok")
    for _ in range(2):
        async with bus:
            await bus.execute(WorkCommand())
    assert len(memory.get_finished_spans()) == 2


class BlockedExporter:
    """An endpoint that never answers until released: the worst a network can do."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait()
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


@pytest.mark.timeout(60)
async def test_a_stuck_endpoint_never_blocks_the_bus_and_drops_are_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stuck = BlockedExporter()
    exporter = OTLPExporter("http://127.0.0.1:1", span_exporter=stuck, max_queue=50, batch_size=10)
    bus = quiet_bus(tmp_path, exporter)
    bus.register_command_handler(WorkCommand, lambda c: "ok")
    await bus.start()
    await bus.execute(WorkCommand())
    assert stuck.entered.wait(10)  # the worker is now inside a request that never returns
    with caplog.at_level(logging.WARNING, logger="llmgine.observability.otlp"):
        for _ in range(200):  # would hang here if write() waited for the endpoint
            await bus.execute(WorkCommand())
    stats = exporter.stats
    assert stats.queued == 50
    # 4 lines per command (command, 2 span lines, result); the queue holds 50 and the
    # batch waiting behind the stuck one 10 spans (their commands' lines, a few more).
    assert 200 * 4 - 50 > stats.dropped >= 200 * 4 - 50 - 12 * 4
    assert "queue full" in caplog.text
    assert "dropped" in repr(exporter)
    stuck.release.set()
    await bus.stop()
    assert exporter.stats.queued == 0


@pytest.mark.timeout(60)
async def test_an_unreachable_endpoint_fails_batches_without_stopping_the_bus(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    exporter = OTLPExporter(f"http://127.0.0.1:{unused_tcp_port}", timeout=0.5)
    bus = quiet_bus(tmp_path, exporter)
    bus.register_command_handler(WorkCommand, lambda c: "ok")
    async with bus:
        result = await bus.execute(WorkCommand())
    assert result.success
    assert exporter.stats.failed == 1
    assert exporter.stats.exported == 0


async def test_a_span_whose_start_line_was_lost_still_exports(tmp_path: Path) -> None:
    bus = quiet_bus(tmp_path)
    bus.register_command_handler(WorkCommand, lambda c: "ok")
    async with bus:
        await bus.execute(WorkCommand())
    assert bus.log_path is not None
    lines = bus.log_path.read_bytes().splitlines()
    starts = [line for line in lines if b'"TraceEvent"' in line and b'"end_time":null' in line]
    assert len(starts) == 1
    memory = InMemorySpanExporter()
    exporter = OTLPExporter("http://127.0.0.1:1", span_exporter=memory)
    assert exporter.export_lines([line for line in lines if line not in starts]) == 1
    (span,) = memory.get_finished_spans()
    row = spans_frame(load_events(bus.log_path)).iloc[0]
    assert span.end_time == row["end_time"].value
    assert span.start_time is not None and span.end_time is not None
    assert abs((span.end_time - span.start_time) / 1e6 - row["duration_ms"]) < 0.01


def test_credentials_never_reach_reprs_or_urls() -> None:
    exporter = OTLPExporter(
        "https://user:s3cret@collector.example:4318",
        headers={"api_key": "k-123"},
        span_exporter=InMemorySpanExporter(),
    )
    assert exporter.endpoint == "https://collector.example:4318/v1/traces"
    assert "s3cret" not in repr(exporter)
    assert exporter.name == "OTLPExporter(https://collector.example:4318/v1/traces)"
    assert "k-123" not in repr(exporter)
    assert redact_url("http://a:b@h:1/p") == "http://a:***@h:1/p"
    assert redact_url("http://token@h:1/p") == "http://***@h:1/p"
    assert redact_url("http://h:1/p") == "http://h:1/p"


def test_a_wrong_endpoint_is_a_clear_error() -> None:
    from llmgine.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="not an http"):
        OTLPExporter("127.0.0.1:6006")


def assert_phoenix_matches_log(rows: list[dict[str, Any]], log: Path) -> None:
    """Phoenix's spans (read by its client) against llmgine's spans_frame of the same run."""
    frame = spans_frame(load_events(log))
    assert len(rows) == len(frame)
    seen = {str(row["context.span_id"]): row for row in rows}
    assert set(seen) == set(frame.index)
    for span_id, span in frame.iterrows():
        row = seen[str(span_id)]
        assert row["name"] == span["name"]
        assert row["context.trace_id"] == span["context.trace_id"]
        parent = span["parent_id"] if isinstance(span["parent_id"], str) else None
        assert row["parent_id"] == parent
        assert row["status_code"] == span["status_code"]
        assert row["span_kind"] == {"LLM": "LLM", "TOOL": "TOOL"}.get(span["span_kind"], "CHAIN")
        for column in ("start_time", "end_time"):  # epoch milliseconds in Phoenix's JSON
            assert abs(float(row[column]) - span[column].value / 1e6) < 1.0  # type: ignore[arg-type]
        if span["span_kind"] == "LLM":
            assert (
                row["attributes.llm.token_count.prompt"]
                == span["attributes.gen_ai.usage.input_tokens"]
            )
            assert (
                row["attributes.llm.token_count.completion"]
                == span["attributes.gen_ai.usage.output_tokens"]
            )
            assert row["attributes.llm.model_name"] == "m-1"
        if span["status_code"] == "ERROR":
            assert row["status_message"] == span["status_message"]
            assert [e["name"] for e in row["events"]] == ["exception"]  # type: ignore[attr-defined]
    tokens = sum(
        float(row["attributes.llm.token_count.total"])  # type: ignore[arg-type]
        for row in rows
        if row["span_kind"] == "LLM"
    )
    assert tokens == 265


@pytest.mark.timeout(1500)  # the first run installs arize-phoenix into a cached virtualenv
async def test_phoenix_shows_a_live_run_with_its_tree_and_tokens(
    phoenix: Any, tmp_path: Path
) -> None:
    exporter = OTLPExporter(phoenix.url, project_name="live-run")
    bus = quiet_bus(tmp_path, exporter)
    await record_run(bus)
    assert exporter.stats.exported == 8
    assert bus.log_path is not None
    assert_phoenix_matches_log(phoenix.spans("live-run", expected=8), bus.log_path)


@pytest.mark.timeout(1500)
async def test_the_command_line_replays_a_log_into_phoenix(
    phoenix: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmgine.__main__ import main

    bus = quiet_bus(tmp_path)
    await record_run(bus)
    assert bus.log_path is not None
    assert main(["export", str(tmp_path), "--otlp", phoenix.url, "--project", "replayed"]) == 0
    assert "exported 8 spans from 1 file(s) to" in capsys.readouterr().out
    assert_phoenix_matches_log(phoenix.spans("replayed", expected=8), bus.log_path)


def test_the_command_line_export_fails_clearly(
    tmp_path: Path, unused_tcp_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from llmgine.__main__ import main

    asyncio.run(record_run(quiet_bus(tmp_path)))
    assert main(["export", str(tmp_path), "--otlp", "127.0.0.1:6006"]) == 2
    assert main(["export", str(tmp_path), "--otlp", "http://x:1", "--header", "nokey"]) == 2
    url = f"http://user:pw@127.0.0.1:{unused_tcp_port}"
    assert main(["export", str(tmp_path), "--otlp", url, "--header", "api_key=k-9"]) == 1
    captured = capsys.readouterr()
    assert "not an http(s) URL" in captured.err
    assert "--header takes KEY=VALUE" in captured.err
    assert f"127.0.0.1:{unused_tcp_port}/v1/traces did not accept 8 span(s)" in captured.err
    assert "pw" not in captured.err + captured.out
    assert "k-9" not in captured.err + captured.out
    assert "Traceback" not in captured.err


@pytest.mark.timeout(120)
def test_the_command_line_export_skips_odd_lines_and_sends_the_rest(
    tmp_path: Path, collector: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from llmgine.__main__ import main

    asyncio.run(record_run(quiet_bus(tmp_path)))
    trace = (
        b'{"kind":"event","type":"TraceEvent","module":"llmgine.observability.events",'
        b'"id":"0","timestamp":"2026-01-01T00:00:00+00:00","session_id":"global",'
        b'"trace_id":null,"span_id":"s1","metadata":{},"data":'
    )
    odd = [
        b"garbage",
        b"[1, 2, 3]",
        b'{"kind": "event"}',
        trace + b"{}}",  # a span line without its fields
        trace + b'{"span_context":"abc"}}',
        trace + b'{"span_context":{"span_id":"a","trace_id":"b"},"end_time":"noon"}}',
        trace + b'{"span_context":{"span_id":"a","trace_id":"b"},"attributes":"x"}}',
        trace.replace(b"TraceEvent", b"CommandResultEvent").replace(
            b"observability.events", b"messages.events"
        )
        + b'{"command_result":"not an object"}}',
    ]
    log = tmp_path / "run.jsonl"
    lines = log.read_bytes().splitlines()
    log.write_bytes(b"\n".join([*odd[:4], *lines[:6], *odd[4:], *lines[6:]]) + b"\n")
    assert main(["export", str(tmp_path), "--otlp", collector.url]) == 0
    captured = capsys.readouterr()
    assert "exported 8 spans from 1 file(s) to" in captured.out
    assert f"{len(odd)} line(s) could not be read and were skipped" in captured.out
    assert "Traceback" not in captured.err
    assert len(collector.names) == 8
