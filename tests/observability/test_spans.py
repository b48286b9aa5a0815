"""Trace spans: every execute() is one; nesting; custom spans."""

from __future__ import annotations

import pytest

from llmgine import TraceEvent, current_span
from llmgine.bus import MessageBus
from llmgine.messages import Command, Event


class OuterCommand(Command):
    fail_inner: bool = False


class InnerCommand(Command):
    fail: bool = False


class NoticedEvent(Event):
    pass


def collect_spans(bus: MessageBus) -> list[TraceEvent]:
    spans: list[TraceEvent] = []
    bus.register_event_handler(TraceEvent, spans.append)
    return spans


async def test_execute_is_a_span_with_start_and_end(bus: MessageBus) -> None:
    spans = collect_spans(bus)
    bus.register_command_handler(InnerCommand, lambda c: "ok")
    await bus.execute(InnerCommand())
    await bus.wait_for_events()
    start, end = spans
    assert start.span_context == end.span_context
    assert start.name == end.name == "InnerCommand"
    assert start.start_time is not None
    assert start.end_time is None
    assert end.end_time is not None
    assert end.end_time >= start.start_time
    assert end.status == "OK"
    assert end.duration_ms is not None
    assert end.duration_ms >= 0
    assert end.span_kind == "CHAIN"
    assert start.span_context.parent_span_id is None


async def test_nested_commands_are_child_spans_of_one_trace(bus: MessageBus) -> None:
    spans = collect_spans(bus)

    async def outer(cmd: OuterCommand) -> bool:
        result = await bus.execute(InnerCommand(fail=cmd.fail_inner))
        return result.success

    def inner(cmd: InnerCommand) -> None:
        if cmd.fail:
            raise ValueError("inner failed")

    bus.register_command_handler(OuterCommand, outer)
    bus.register_command_handler(InnerCommand, inner)
    await bus.execute(OuterCommand(fail_inner=True))
    await bus.wait_for_events()
    ends = {s.name: s for s in spans if s.end_time is not None}
    outer_ctx, inner_ctx = ends["OuterCommand"].span_context, ends["InnerCommand"].span_context
    assert inner_ctx.trace_id == outer_ctx.trace_id
    assert inner_ctx.parent_span_id == outer_ctx.span_id
    assert ends["InnerCommand"].status == "ERROR"
    assert ends["InnerCommand"].status_message == "ValueError: inner failed"
    assert ends["OuterCommand"].status == "OK"


async def test_separate_executes_are_separate_traces(bus: MessageBus) -> None:
    spans = collect_spans(bus)
    bus.register_command_handler(InnerCommand, lambda c: None)
    await bus.execute(InnerCommand())
    await bus.execute(InnerCommand())
    await bus.wait_for_events()
    assert len({s.span_context.trace_id for s in spans}) == 2


async def test_custom_spans_nest_and_record_errors(bus: MessageBus) -> None:
    spans = collect_spans(bus)
    async with bus.span("load", rows=10) as outer:
        assert current_span() == outer.context
        async with bus.span("parse", kind="TOOL") as inner:
            inner.set_attribute("bytes", 42)
        with pytest.raises(RuntimeError):
            async with bus.span("explode"):
                raise RuntimeError("kaboom")
    assert current_span() is None
    await bus.wait_for_events()
    ends = {s.name: s for s in spans if s.end_time is not None}
    assert ends["parse"].span_context.parent_span_id == outer.context.span_id
    assert ends["parse"].attributes == {"bytes": 42}
    assert ends["parse"].span_kind == "TOOL"
    assert ends["load"].attributes == {"rows": 10}
    assert ends["explode"].status == "ERROR"
    assert ends["explode"].status_message == "RuntimeError: kaboom"
    assert ends["load"].status == "OK"


async def test_events_published_by_handlers_stay_in_the_command_span(bus: MessageBus) -> None:
    noticed: list[tuple[NoticedEvent, object]] = []

    async def handler(cmd: InnerCommand) -> None:
        await bus.publish(NoticedEvent())

    bus.register_command_handler(InnerCommand, handler)
    bus.register_event_handler(NoticedEvent, lambda e: noticed.append((e, current_span())))
    spans = collect_spans(bus)
    await bus.execute(InnerCommand())
    await bus.wait_for_events()
    assert noticed[0][1] == spans[0].span_context


def test_trace_event_accepts_iso_strings_like_the_seed_readme() -> None:
    from datetime import UTC, datetime

    from llmgine import SpanContext

    now = datetime.now()
    event = TraceEvent(
        name="Custom Operation Start",
        span_context=SpanContext(trace_id="t", span_id="s"),
        start_time=now.isoformat(),  # type: ignore[arg-type]
    )
    assert event.start_time == now.astimezone(UTC)
    assert event.start_time is not None
    assert event.start_time.tzinfo is UTC
