"""The console printer: one line per metric and per span end, per the flags."""

from __future__ import annotations

import io

from llmgine import Metric, MetricEvent
from llmgine.bus import MessageBus
from llmgine.messages import Command


class WorkCommand(Command):
    fail: bool = False


def work(cmd: WorkCommand) -> None:
    if cmd.fail:
        raise ValueError("bad input")


async def run_some(bus: MessageBus) -> None:
    bus.register_command_handler(WorkCommand, work)
    async with bus:
        await bus.execute(WorkCommand())
        await bus.execute(WorkCommand(fail=True))
        await bus.publish(
            MetricEvent(
                metrics=[
                    Metric(name="files", value=10),
                    Metric(name="latency", value=1.5, unit="ms", tags={"model": "m"}),
                ]
            )
        )


async def test_console_prints_metrics_and_span_ends() -> None:
    stream = io.StringIO()
    await run_some(MessageBus(log_dir=None, console_stream=stream))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("[span] WorkCommand OK ")
    assert lines[1].startswith("[span] WorkCommand ERROR ")
    assert "(ValueError: bad input)" in lines[1]
    assert lines[2:] == ["[metric] files=10", "[metric] latency=1.5 ms model=m"]


async def test_console_flags_turn_output_off() -> None:
    stream = io.StringIO()
    await run_some(
        MessageBus(
            log_dir=None,
            enable_console_metrics=False,
            enable_console_traces=False,
            console_stream=stream,
        )
    )
    assert stream.getvalue() == ""


async def test_console_metrics_only() -> None:
    stream = io.StringIO()
    await run_some(MessageBus(log_dir=None, enable_console_traces=False, console_stream=stream))
    assert all(line.startswith("[metric]") for line in stream.getvalue().splitlines())
    assert stream.getvalue().count("\n") == 2
