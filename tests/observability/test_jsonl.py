"""The JSONL log: envelope, order, exactly once, repr fallback, whole lines."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from llmgine import JsonlLog, Metric, MetricEvent
from llmgine.bus import MessageBus
from llmgine.messages import Command, Event

ReadLog = Callable[[Path | None], list[dict[str, Any]]]

ENVELOPE = [
    "kind",
    "type",
    "module",
    "id",
    "timestamp",
    "session_id",
    "trace_id",
    "span_id",
    "metadata",
    "data",
]


class SaveCommand(Command):
    name: str


class SavedEvent(Event):
    name: str
    payload: Any = None


class TokenStreamedEvent(Event):
    log_to_file: ClassVar[bool] = False
    text: str


class Unserializable:
    def __repr__(self) -> str:
        return "<Unserializable thing>"


async def test_every_line_has_the_envelope(bus: MessageBus, read_log: ReadLog) -> None:
    bus.register_command_handler(SaveCommand, lambda c: None)
    cmd = SaveCommand(name="a", metadata={"user": "ann"})
    await bus.execute(cmd)
    await bus.publish(MetricEvent(metrics=[Metric(name="n", value=1.5, unit="s")]))
    await bus.wait_for_events()
    lines = read_log(bus.log_path)
    assert all(list(line) == ENVELOPE for line in lines)
    command = next(line for line in lines if line["kind"] == "command")
    assert command["type"] == "SaveCommand"
    assert command["module"] == __name__
    assert command["id"] == str(cmd.id)
    assert command["metadata"] == {"user": "ann"}
    assert command["data"] == {"name": "a"}
    assert datetime.fromisoformat(command["timestamp"]) == cmd.timestamp
    assert command["timestamp"].endswith("+00:00")
    metric = lines[-1]
    assert (metric["kind"], metric["type"]) == ("event", "MetricEvent")
    assert metric["module"] == "llmgine.observability.events"
    assert metric["data"] == {"metrics": [{"name": "n", "value": 1.5, "unit": "s", "tags": {}}]}
    assert metric["trace_id"] is None
    assert metric["span_id"] is None


async def test_lines_carry_the_active_span(bus: MessageBus, read_log: ReadLog) -> None:
    async def save(cmd: SaveCommand) -> None:
        await bus.publish(SavedEvent(name=cmd.name))

    bus.register_command_handler(SaveCommand, save)
    await bus.execute(SaveCommand(name="a"))
    await bus.wait_for_events()
    lines = read_log(bus.log_path)
    assert len({(line["trace_id"], line["span_id"]) for line in lines}) == 1
    assert lines[0]["trace_id"] is not None
    assert [line["type"] for line in lines] == [
        "TraceEvent",
        "SaveCommand",
        "SavedEvent",
        "CommandResultEvent",
        "TraceEvent",
    ]


async def test_each_message_is_written_once_in_order(bus: MessageBus, read_log: ReadLog) -> None:
    ids = []
    for n in range(500):
        event = SavedEvent(name=str(n))
        ids.append(str(event.id))
        await bus.publish(event)
    await bus.wait_for_events()
    assert [line["id"] for line in read_log(bus.log_path)] == ids


async def test_values_json_cannot_hold_are_written_as_repr(
    bus: MessageBus, read_log: ReadLog
) -> None:
    await bus.publish(
        SavedEvent(name="x", payload={"obj": Unserializable()}, metadata={"m": Unserializable()})
    )
    await bus.wait_for_events()
    (line,) = read_log(bus.log_path)
    assert line["data"]["payload"] == {"obj": "<Unserializable thing>"}
    assert line["metadata"] == {"m": "<Unserializable thing>"}


async def test_stream_events_may_opt_out_of_the_file(bus: MessageBus, read_log: ReadLog) -> None:
    handled: list[TokenStreamedEvent] = []
    bus.register_event_handler(TokenStreamedEvent, handled.append)
    await bus.publish(TokenStreamedEvent(text="tok"))
    await bus.publish(SavedEvent(name="kept"))
    await bus.wait_for_events()
    assert len(handled) == 1
    assert [line["type"] for line in read_log(bus.log_path)] == ["SavedEvent"]


async def test_the_log_is_readable_while_the_bus_runs(bus: MessageBus, read_log: ReadLog) -> None:
    await bus.publish(SavedEvent(name="first"))
    await bus.wait_for_events()
    assert [line["data"]["name"] for line in read_log(bus.log_path)] == ["first"]
    assert bus.is_running


async def test_default_log_name_is_timestamped(tmp_path: Path) -> None:
    bus = MessageBus(log_dir=tmp_path)
    assert bus.log_path is not None
    assert bus.log_path.parent == tmp_path
    assert bus.log_path.name.startswith("events_")
    assert bus.log_path.suffix == ".jsonl"
    assert MessageBus(log_dir=tmp_path).log_path != bus.log_path


async def test_no_log_dir_writes_no_file(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    async with MessageBus(log_dir=None) as bus:
        await bus.publish(SavedEvent(name="x"))
    assert bus.log_path is None
    assert list(os.listdir(tmp_path)) == []


def test_the_writer_writes_whole_lines_only(tmp_path: Path) -> None:
    log = JsonlLog(tmp_path / "sub" / "x.jsonl", max_buffered_lines=3)
    log.write(b'{"a": 1}\n')  # before open: kept in memory
    log.open()
    assert (tmp_path / "sub" / "x.jsonl").read_text() == '{"a": 1}\n'
    log.write(b'{"a": 2}\n')
    log.write(b'{"a": 3}\n')
    assert log.path.read_text().count("\n") == 1  # buffered
    log.write(b'{"a": 4}\n')  # the third buffered line triggers a flush
    text = log.path.read_text()
    assert text.endswith("\n")
    assert [json.loads(x)["a"] for x in text.splitlines()] == [1, 2, 3, 4]
    log.write(b'{"a": 5}\n')
    log.close()
    assert log.lines_written == 5
    assert not log.is_open


async def test_spans_nobody_listens_to_are_still_logged(tmp_path: Path, read_log: ReadLog) -> None:
    bus = MessageBus(
        log_dir=tmp_path,
        log_filename="quiet.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
    )
    bus.register_command_handler(SaveCommand, lambda c: c.name)
    async with bus:
        await bus.execute(SaveCommand(name="a"))
    lines = read_log(bus.log_path)
    assert [line["type"] for line in lines] == [
        "TraceEvent",
        "SaveCommand",
        "CommandResultEvent",
        "TraceEvent",
    ]
    assert lines[2]["data"]["command_result"]["result"] == "a"
    assert lines[3]["data"]["status"] == "OK"
    assert bus.stats.events_published == 3


def test_concurrent_writers_and_flushes_lose_nothing(tmp_path: Path) -> None:
    import threading

    log = JsonlLog(tmp_path / "threads.jsonl", max_buffered_lines=7)
    log.open()

    def writer(name: str) -> None:
        for i in range(2000):
            log.write(f'{{"w": "{name}", "i": {i}}}\n'.encode())
            if i % 50 == 0:
                log.flush()

    threads = [threading.Thread(target=writer, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    rows = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert len(rows) == 8000
    for n in range(4):
        assert [r["i"] for r in rows if r["w"] == f"t{n}"] == list(range(2000))  # each in order
