"""Never lose an accepted line: before start, after stop, on a busy bus, at exit, after fork."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from llmgine.bus import MessageBus
from llmgine.messages import Command, Event


class WroteEvent(Event):
    n: int = 0
    pad: str = ""


class NoteCommand(Command):
    n: int = 0


def read(path: Path | None) -> list[dict[str, Any]]:
    assert path is not None
    return [json.loads(line) for line in path.read_text().splitlines()]


def quiet(tmp_path: Path, **kwargs: Any) -> MessageBus:
    return MessageBus(
        log_dir=tmp_path,
        log_filename="bus.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
        **kwargs,
    )


async def test_messages_after_stop_and_before_start_are_written(tmp_path: Path) -> None:
    bus = quiet(tmp_path)
    bus.register_command_handler(NoteCommand, lambda c: c.n)
    await bus.publish(WroteEvent(n=1))  # never started yet
    assert [line["data"]["n"] for line in read(bus.log_path)] == [1]
    async with bus:
        await bus.publish(WroteEvent(n=2))
    await bus.publish(WroteEvent(n=3))  # after stop
    assert (await bus.execute(NoteCommand(n=4))).result == 4
    lines = read(bus.log_path)
    assert [line["data"]["n"] for line in lines if line["type"] == "WroteEvent"] == [1, 2, 3]
    assert [line["data"]["n"] for line in lines if line["type"] == "NoteCommand"] == [4]


EXIT_WITHOUT_STOP = """
import asyncio, sys
from llmgine import MessageBus, Event

class WroteEvent(Event):
    n: int

async def main():
    bus = MessageBus(log_dir=sys.argv[1], log_filename="bus.jsonl", enable_console_traces=False)
    await bus.start()
    for n in range(50):
        await bus.publish(WroteEvent(n=n))
    # no stop(), no wait: the process just ends
    globals()["kept"] = bus

asyncio.run(main())
"""

FORK_WITH_BUFFERED_LINES = """
import asyncio, os, sys
from llmgine import MessageBus, Event

class WroteEvent(Event):
    n: int

async def main():
    bus = MessageBus(log_dir=sys.argv[1], log_filename="bus.jsonl", enable_console_traces=False)
    bus.sinks[0].flush_interval = 60  # no flush by age in this short script
    await bus.start()
    for n in range(10):
        await bus.publish(WroteEvent(n=n))  # buffered: the consumer has not run yet
    assert bus.sinks[0].pending_lines == 10
    pid = os.fork()
    if pid == 0:
        sys.exit(0)  # a normal exit of the child: its exit handlers run
    os.waitpid(pid, 0)
    await bus.stop()

asyncio.run(main())
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("script", [EXIT_WITHOUT_STOP, FORK_WITH_BUFFERED_LINES])
def test_each_line_reaches_the_file_exactly_once(tmp_path: Path, script: str) -> None:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    out = subprocess.run(
        [sys.executable, str(path), str(tmp_path)], capture_output=True, text=True, timeout=50
    )
    assert out.returncode == 0, out.stderr
    lines = read(tmp_path / "bus.jsonl")
    numbers = [line["data"]["n"] for line in lines]
    assert numbers == list(range(len(numbers)))
    assert len(numbers) in (10, 50)
    assert len({line["id"] for line in lines}) == len(lines)


async def test_the_write_buffer_is_bounded_in_bytes(tmp_path: Path) -> None:
    bus = quiet(tmp_path, max_queue_size=10)
    log = bus.sinks[0]
    bound = 1 << 20
    pad = "x" * 250_000
    most = 0
    async with bus:
        for n in range(40):
            await bus.publish(WroteEvent(n=n, pad=pad))
            most = max(most, log.pending_lines)  # type: ignore[attr-defined]
    assert most * 250_000 <= bound + 250_000
    assert len(read(bus.log_path)) == 40


class BusyEvent(Event):
    n: int


@pytest.mark.timeout(60)
async def test_a_bus_that_never_idles_still_writes_its_lines(tmp_path: Path) -> None:
    bus = quiet(tmp_path)
    started = time.monotonic()
    on_disk_while_busy: list[int] = []

    async def keep_busy(event: BusyEvent) -> None:
        spin_until = time.perf_counter() + 0.002
        while time.perf_counter() < spin_until:  # ~2 ms of work per event
            pass
        if time.monotonic() - started < 0.6:
            await bus.publish(BusyEvent(n=event.n + 1))  # the queue never runs empty
        else:
            assert bus.log_path is not None
            on_disk_while_busy.append(bus.log_path.read_bytes().count(b"\n"))

    bus.register_event_handler(BusyEvent, keep_busy)
    async with bus:
        await bus.publish(BusyEvent(n=0))
        await asyncio.wait_for(bus.wait_for_events(), 30)
    assert on_disk_while_busy and on_disk_while_busy[0] > 0
