"""A failing sink never stops the bus, never tears or drops a line, and is always reported."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmgine import SinkFailedEvent
from llmgine.bus import MessageBus
from llmgine.messages import Event
from llmgine.observability import Record


class NotedEvent(Event):
    n: int


class RaisingSink:
    """A sink that fails every call: an exporter whose endpoint is gone."""

    name = "raising"

    def __init__(self) -> None:
        self.calls = 0

    def write(self, record: Record) -> None:
        self.calls += 1
        raise ConnectionError("endpoint gone")

    def flush(self) -> None:
        raise ConnectionError("endpoint gone")

    def close(self) -> None:
        pass


class ListSink:
    name = "list"

    def __init__(self) -> None:
        self.types: list[str] = []

    def write(self, record: Record) -> None:
        self.types.append(type(record.message).__name__)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.timeout(30)
async def test_a_full_disk_is_reported_once_and_the_bus_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = MessageBus(log_dir="/dev", log_filename="full", enable_console_traces=False)
    handled: list[int] = []
    reports: list[SinkFailedEvent] = []
    bus.register_event_handler(NotedEvent, lambda e: handled.append(e.n))
    bus.register_event_handler(SinkFailedEvent, reports.append)
    await bus.start()
    for n in range(20):
        await bus.publish(NotedEvent(n=n))
        await asyncio.wait_for(bus.wait_for_events(), 10)  # each wait flushes, and fails
    assert handled == list(range(20))
    assert len(reports) == 1  # once per run of failures, not per failure
    assert reports[0].sink == "jsonl"
    assert reports[0].error_type == "OSError"
    assert "No space left" in reports[0].error
    assert bus.stats.sink_failures >= 20
    assert bus.sinks[0].pending_lines == 20 + 1  # every line kept, the report's own too
    assert caplog.text.count("Sink jsonl failed") == 1
    await bus.stop()  # reports what it could not write, and returns
    assert bus.sinks[0].pending_lines >= 21
    bus.sinks[0]._writer.buffer.clear()  # these lines can never be written: no report at exit


@pytest.mark.timeout(30)
async def test_a_sink_that_raises_does_not_stop_the_others(tmp_path: Path) -> None:
    raising, listing = RaisingSink(), ListSink()
    bus = MessageBus(log_dir=tmp_path, log_filename="bus.jsonl", sinks=[raising, listing])
    async with bus:
        for n in range(5):
            await bus.publish(NotedEvent(n=n))
    assert raising.calls >= 5
    assert listing.types.count("NotedEvent") == 5
    assert "SinkFailedEvent" in listing.types
    lines = [json.loads(line) for line in (tmp_path / "bus.jsonl").read_text().splitlines()]
    assert [line["data"]["n"] for line in lines if line["type"] == "NotedEvent"] == list(range(5))
    assert [line["data"]["sink"] for line in lines if line["type"] == "SinkFailedEvent"] == [
        "raising"
    ]


def test_add_sink_refuses_what_is_not_a_sink() -> None:
    bus = MessageBus(log_dir=None)
    with pytest.raises(TypeError, match="flush"):
        bus.add_sink(object())  # type: ignore[arg-type]


FILE_SIZE_LIMIT = """
import asyncio, json, resource, signal, sys
from llmgine import MessageBus, Event, SinkFailedEvent, SinkRecoveredEvent

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead

class BigEvent(Event):
    n: int
    pad: str

async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    bus = MessageBus(log_dir=sys.argv[1], log_filename="x.jsonl", enable_console_traces=False)
    seen = []
    bus.register_event_handler(SinkFailedEvent, lambda e: seen.append("failed"))
    bus.register_event_handler(SinkRecoveredEvent, lambda e: seen.append("recovered"))
    async with bus:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
        for n in range(100):
            await bus.publish(BigEvent(n=n, pad="x" * 700))
            if n % 10 == 0:
                await bus.wait_for_events()
        await bus.wait_for_events()
        stuck = bus.sinks[0].pending_lines
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space again
        await bus.publish(BigEvent(n=100, pad=""))
        await bus.wait_for_events()
    print(json.dumps({"stuck": stuck, "seen": seen, "failures": bus.stats.sink_failures}))

asyncio.run(main())
"""


@pytest.mark.timeout(60)
def test_a_file_size_limit_keeps_every_line_whole_and_writes_them_when_space_returns(
    tmp_path: Path,
) -> None:
    script = tmp_path / "limit.py"
    script.write_text(textwrap.dedent(FILE_SIZE_LIMIT))
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=50
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["stuck"] > 50  # the limit really held lines back
    assert report["failures"] >= 1
    assert report["seen"] == ["failed", "recovered"]
    raw = (tmp_path / "x.jsonl").read_bytes()
    assert raw.endswith(b"\n")
    lines = [json.loads(line) for line in raw.splitlines()]  # every line whole
    numbers = [line["data"]["n"] for line in lines if line["type"] == "BigEvent"]
    assert numbers == list(range(101))  # none lost, none twice, in order
    assert [line["type"] for line in lines].count("SinkFailedEvent") == 1
