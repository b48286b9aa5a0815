"""OTLPExporter under load and faults, against real collectors on 127.0.0.1.

A healthy collector receives every span however many events a command publishes;
a collector that never answers costs bounded memory (counted drops), and one that
refuses for a while loses nothing; stopping a bus at a hung collector ends every
exporter at once, with its counts final; a user's own
event that shares a name with llmgine's, or a broken line, never stops the export;
a key in the endpoint URL never reaches a log, a warning or the console.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from typing import Any

import pytest

from llmgine._processes import free_port
from llmgine.bus import MessageBus
from llmgine.messages import Command, Event
from llmgine.observability.otlp import OTLPExporter


class TickEvent(Event):
    n: int = 0


class TraceEvent(Event):
    """A user's event that shares its name with llmgine's span event."""

    span_context: str = "not llmgine's"


class CommandResultEvent(Event):
    """A user's event that shares its name with llmgine's result event."""

    command_result: str = "not llmgine's"


class PingCommand(Command):
    events: int = 0
    payload: str = ""
    impostors: bool = False


def quiet_bus(*sinks: Any) -> MessageBus:
    return MessageBus(
        log_dir=None,
        enable_console_metrics=False,
        enable_console_traces=False,
        sinks=list(sinks),
    )


def serve_pings(bus: MessageBus) -> None:
    async def ping(cmd: PingCommand) -> str:
        for n in range(cmd.events):
            await bus.publish(TickEvent(n=n))
        if cmd.impostors:
            await bus.publish(TraceEvent())
            await bus.publish(CommandResultEvent())
        return "pong"

    bus.register_command_handler(PingCommand, ping)


@pytest.mark.timeout(600)
async def test_a_healthy_collector_receives_every_span_of_a_busy_bus(collector: Any) -> None:
    commands, events = 2_000, 30
    exporter = OTLPExporter(collector.url)
    bus = quiet_bus(exporter)
    serve_pings(bus)
    async with bus:
        for _ in range(commands):
            await bus.execute(PingCommand(events=events))
        await bus.wait_for_events()
        assert await asyncio.to_thread(exporter.force_flush, 300)
    assert collector.names.count("PingCommand") == commands
    stats = exporter.stats
    assert (stats.exported, stats.dropped, stats.failed, stats.errors) == (commands, 0, 0, 0)


@pytest.mark.timeout(120)
async def test_a_hung_collector_holds_the_queue_within_its_bytes(
    hung_collector: str, caplog: pytest.LogCaptureFixture
) -> None:
    bound = 1_000_000
    exporter = OTLPExporter(hung_collector, timeout=60, max_queue_bytes=bound)
    bus = quiet_bus(exporter)
    serve_pings(bus)
    await bus.start()
    peak = 0
    for _ in range(300):  # 100 KB commands: 30 MB written, far past the bound
        await bus.execute(PingCommand(payload="x" * 100_000, events=3))
        peak = max(peak, exporter.stats.queued_bytes)
    stats = exporter.stats
    assert 0 < peak <= bound
    assert stats.queued_bytes <= bound
    assert stats.dropped > 0
    assert stats.exported == 0
    full = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(full) == 1 and full[0].levelno == logging.WARNING  # one, not one per line
    await bus.stop()  # gives the collector 5 s, then counts what it never took
    assert exporter.stats.queued_bytes == 0
    assert exporter.stats.dropped > stats.dropped


@pytest.mark.timeout(120)
@pytest.mark.parametrize("code", [429, 503])
async def test_spans_refused_during_an_outage_arrive_once_the_collector_answers(
    collector: Any, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llmgine.observability.otlp")
    commands = 40
    collector.refuse, collector.refuse_code = 4, code  # each export request fails
    exporter = OTLPExporter(collector.url, timeout=0.5)  # sooner than the outage ends
    bus = quiet_bus(exporter)
    serve_pings(bus)
    async with bus:
        for n in range(commands):
            await bus.execute(PingCommand())
            if n % 10 == 9:
                exporter.flush()  # several batches, some sent during the outage
        await bus.wait_for_events()
        assert await asyncio.to_thread(exporter.force_flush, 90)
    assert collector.names.count("PingCommand") == commands
    assert collector.refuse == 0  # the outage did happen
    stats = exporter.stats
    assert (stats.exported, stats.failed, stats.dropped, stats.retrying) == (commands, 0, 0, 0)
    assert "not accepted, kept and sent again" in caplog.text
    assert "takes spans again" in caplog.text


@pytest.mark.timeout(120)
async def test_a_refused_batch_is_kept_within_the_queue_bytes(
    collector: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bound = 60_000
    collector.refuse, collector.refuse_after = 1_000_000, 0.2  # down for the whole test
    exporter = OTLPExporter(collector.url, timeout=1, max_queue_bytes=bound, batch_size=5)
    bus = quiet_bus(exporter)
    serve_pings(bus)
    await bus.start()
    peak = 0
    with caplog.at_level(logging.WARNING, logger="llmgine.observability.otlp"):
        # 10 KB commands, far past the bound, until a refused batch finds the queue
        # filled while it was being sent: its oldest spans make room.
        while exporter.stats.failed == 0:
            await bus.execute(PingCommand(payload="x" * 10_000))
            peak = max(peak, exporter.stats.queued_bytes)
            await asyncio.sleep(0.01)  # the commands trickle in, during the requests
        stats = exporter.stats
        await bus.stop()
    assert 0 < peak <= bound
    assert stats.exported == 0 and stats.dropped > 0
    assert stats.retrying < 5  # what is kept fits beside the queue
    assert "the endpoint is down and the queue is full" in caplog.text
    final = exporter.stats
    assert final.queued_bytes == 0 and final.failed >= stats.failed + stats.retrying


@pytest.mark.timeout(120)
async def test_stopping_a_bus_at_a_hung_collector_ends_every_exporter_with_final_counts(
    hung_collector: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Requests outlast close(): each exporter has a batch stuck in a request when it closes.
    exporters = [OTLPExporter(hung_collector, timeout=8) for _ in range(3)]
    bus = quiet_bus(*exporters)
    serve_pings(bus)
    before = set(threading.enumerate())
    await bus.start()
    for _ in range(5):
        await bus.execute(PingCommand())
    ours = [t for t in set(threading.enumerate()) - before if t.name.startswith("llmgine-otlp")]
    assert len(ours) == 2 * len(exporters)
    with caplog.at_level(logging.WARNING, logger="llmgine.observability.otlp"):
        await bus.stop()
    at_stop = [exporter.stats for exporter in exporters]
    for thread in ours:
        thread.join(30)
    assert not [t.name for t in ours if t.is_alive()]
    assert [exporter.stats for exporter in exporters] == at_stop  # nothing counted later
    for stats in at_stop:  # every span is accounted for: none taken, all given up
        assert (stats.exported, stats.queued, stats.retrying) == (0, 0, 0)
        # Those in the stuck request failed; on a loaded machine the pings can outlast the
        # first batch, and the lines still queued behind it are counted as dropped.
        assert 1 <= stats.failed <= 5
        assert stats.failed == 5 or stats.dropped > 0
    closed = [r for r in caplog.records if "closed before the endpoint took" in r.getMessage()]
    assert len(closed) == len(exporters)
    assert all("5 span(s) given up" in r.getMessage() for r in closed)


@pytest.mark.timeout(120)
async def test_a_user_event_named_like_llmgine_s_never_stops_the_export(collector: Any) -> None:
    exporter = OTLPExporter(collector.url)
    bus = quiet_bus(exporter)
    serve_pings(bus)
    async with bus:
        await bus.execute(PingCommand(impostors=True))
        await bus.publish(TraceEvent())
        await bus.publish(CommandResultEvent())
        await bus.wait_for_events()
        assert await asyncio.to_thread(exporter.force_flush, 30)
        for _ in range(20):
            await bus.execute(PingCommand())
        assert await asyncio.to_thread(exporter.force_flush, 30)
    assert collector.names.count("PingCommand") == 21
    assert (exporter.stats.errors, exporter.stats.skipped) == (0, 0)


@pytest.mark.timeout(120)
async def test_a_broken_span_line_is_skipped_and_the_export_goes_on(collector: Any) -> None:
    exporter = OTLPExporter(collector.url)
    head = (
        b'{"kind":"event","type":"TraceEvent","module":"llmgine.observability.events",'
        b'"id":"0","timestamp":"2026-01-01T00:00:00+00:00","session_id":"global",'
        b'"trace_id":null,"span_id":null,"metadata":{},"data":'
    )
    broken = [
        head + b'{"span_context":"not an object"}}\n',
        head + b'{"span_context":{"span_id":"a","trace_id":"b"},"end_time":5}}\n',
        head + b'{"span_context":{"span_id":"a","trace_id":"b"},"attributes":[1]}}\n',
    ]
    bus = quiet_bus(exporter)
    serve_pings(bus)
    async with bus:
        await bus.execute(PingCommand())
        for line in broken:
            exporter.write(line)
        for _ in range(5):
            await bus.execute(PingCommand())
        assert await asyncio.to_thread(exporter.force_flush, 30)
    assert collector.names.count("PingCommand") == 6
    assert exporter.stats.skipped == len(broken)


@pytest.mark.timeout(120)
async def test_a_key_in_the_endpoint_url_never_reaches_logs_warnings_or_output(
    collector: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "S3CRET-key-4711"
    refusing = f"http://127.0.0.1:{free_port()}/v1/traces?api_key={secret}&x-api-key={secret}"
    answering = f"{collector.url}/v1/traces?api-key={secret}"
    caplog.set_level(logging.DEBUG)  # every library's debug lines too (urllib3 logs requests)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for url in (refusing, answering):
            exporter = OTLPExporter(url, timeout=3)
            bus = quiet_bus(exporter)
            serve_pings(bus)
            async with bus:
                await bus.execute(PingCommand())
            shown = [repr(exporter), str(exporter), exporter.name, exporter.endpoint]
            assert secret not in " ".join(shown)
            assert "api_key=***" in exporter.endpoint or "api-key=***" in exporter.endpoint
    assert exporter.stats.exported == 1  # the answering one
    assert "Failed to export" in caplog.text  # OpenTelemetry did log the refused one
    output = capfd.readouterr()
    for text in (caplog.text, output.out, output.err, *(str(w.message) for w in caught)):
        assert secret not in text


def test_span_lines_are_known_by_the_real_module_of_each_class() -> None:
    from llmgine.evals.events import EvaluationEvent
    from llmgine.llm.events import LLMResponseEvent, ToolCallEvent, ToolResultEvent
    from llmgine.messages.events import CommandErrorEvent, CommandResultEvent
    from llmgine.observability.events import TraceEvent as LLMgineTraceEvent
    from llmgine.observability.otlp.spans import SPAN_MESSAGES

    classes = [
        LLMgineTraceEvent,
        CommandResultEvent,
        CommandErrorEvent,
        LLMResponseEvent,
        ToolCallEvent,
        ToolResultEvent,
        EvaluationEvent,
    ]
    assert {(cls.__module__, cls.__name__) for cls in classes} == SPAN_MESSAGES
