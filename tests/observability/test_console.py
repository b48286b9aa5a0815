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


async def _llm_span(bus: MessageBus, **attributes: object) -> None:
    async with bus.span("chat gpt-4o", kind="LLM") as span:
        span.set_attribute("gen_ai.usage.input_tokens", 100)
        span.set_attribute("gen_ai.usage.output_tokens", 20)
        for name, value in attributes.items():
            span.set_attribute(name, value)


async def test_an_llm_span_line_shows_what_the_call_cost() -> None:
    stream = io.StringIO()
    bus = MessageBus(log_dir=None, enable_console_metrics=False, console_stream=stream)
    async with bus:
        await _llm_span(bus, **{"llmgine.cost_usd": 0.00045, "llmgine.cache.hit": False})
        await _llm_span(bus, **{"llmgine.cost_usd": 0.0, "llmgine.cache.hit": True})
        await _llm_span(bus)  # a model whose price is unknown
        async with bus.span("load"):
            pass
    lines = stream.getvalue().splitlines()
    assert " OK " in lines[0] and " $0.00045 trace=" in lines[0]
    assert " cached $0.00 trace=" in lines[1]
    assert " price unknown trace=" in lines[2]
    assert "$" not in lines[3] and "price" not in lines[3]  # not an LLM call


def test_dollars_are_shown_with_the_digits_that_matter() -> None:
    from llmgine.observability.usd import format_usd

    shown = [format_usd(v) for v in (0.0, 0.00045, 0.0123456, 0.5, 1234.5, None)]
    assert shown == ["$0.00", "$0.00045", "$0.0123", "$0.50", "$1,234.50", "price unknown"]
