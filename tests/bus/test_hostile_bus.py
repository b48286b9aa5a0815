"""What a hostile user tried on the bus: each case failed once, and must not again."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from llmgine import EventHandlerFailedEvent, Metric, MetricEvent
from llmgine.bus import MessageBus
from llmgine.messages import Command, Event
from llmgine.observability import Record, current_span, decode, read_log


class PingEvent(Event):
    n: int = 0


class DoCommand(Command):
    pass


def quiet(**kwargs: Any) -> MessageBus:
    kwargs.setdefault("log_dir", None)
    return MessageBus(enable_console_metrics=False, enable_console_traces=False, **kwargs)


@pytest.mark.timeout(30)
async def test_a_handler_cancelling_its_own_task_is_reported_and_handling_goes_on() -> None:
    bus = quiet()
    handled: list[int] = []
    failures: list[str] = []

    async def rude(event: PingEvent) -> None:
        if event.n == 1:
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            await asyncio.sleep(0)
        handled.append(event.n)

    bus.register_event_handler(PingEvent, rude)
    bus.register_event_handler(EventHandlerFailedEvent, lambda e: failures.append(e.error_type))
    async with bus:
        for n in range(5):
            await bus.publish(PingEvent(n=n))
        await asyncio.wait_for(bus.wait_for_events(), 10)
    assert handled == [0, 2, 3, 4]
    assert failures == ["CancelledError"]
    assert bus.stats.consumer_restarts == 1


@pytest.mark.timeout(30)
async def test_slow_handlers_keep_their_backpressure() -> None:
    bus = quiet(max_queue_size=1)
    queue = bus._transport.queue
    queue.stall_timeout = 0.05
    release = asyncio.Event()

    async def slow(event: PingEvent) -> None:
        await release.wait()

    bus.register_event_handler(PingEvent, slow)
    stalled = asyncio.Event()

    class StallCounter(logging.Handler):
        """Told of each stall the safety net logs (on this loop's thread)."""

        def emit(self, record: logging.LogRecord) -> None:
            if queue.stalls >= 4:
                stalled.set()

    counter = StallCounter()
    logging.getLogger("llmgine.bus.queue").addHandler(counter)
    try:
        async with bus:
            publishers = asyncio.gather(*(bus.publish(PingEvent(n=n)) for n in range(50)))
            await asyncio.wait_for(stalled.wait(), 10)
            # One waiter gets through per stalled period, not all fifty at once.
            assert bus.pending_events <= 2 + queue.stalls
            release.set()
            await asyncio.wait_for(publishers, 10)
            await bus.wait_for_events()
    finally:
        logging.getLogger("llmgine.bus.queue").removeHandler(counter)


@pytest.mark.timeout(30)
async def test_tasks_a_handler_leaves_behind_wait_for_room_like_anyone() -> None:
    bus = quiet(max_queue_size=10)
    bus._transport.queue.stall_timeout = 30  # only real backpressure may hold it
    most = 0

    async def producer() -> None:
        nonlocal most
        for n in range(300):
            await bus.publish(PingEvent(n=n))
            most = max(most, bus.pending_events)

    started: list[asyncio.Task[None]] = []

    async def spawn(event: DoCommand) -> None:
        started.append(asyncio.get_running_loop().create_task(producer()))

    class GoEvent(Event):
        pass

    bus.register_event_handler(GoEvent, lambda e: spawn(DoCommand()))
    async with bus:
        await bus.publish(GoEvent())
        await bus.wait_for_events()
        await asyncio.wait_for(started[0], 20)
        await bus.wait_for_events()
    assert most <= 10 + 1


@pytest.mark.timeout(30)
async def test_a_long_handler_does_not_keep_accepted_lines_off_disk(tmp_path: Path) -> None:
    bus = quiet(log_dir=tmp_path, log_filename="busy.jsonl")
    release = asyncio.Event()

    async def long_call(event: PingEvent) -> None:
        await release.wait()  # a minutes-long LLM call, say

    bus.register_event_handler(PingEvent, long_call)
    timed = asyncio.Event()

    class FlushWatch:
        """A sink told of the bus's routine flushes: while a handler runs, only the timer's."""

        def write(self, record: Record) -> None:
            pass

        def flush(self) -> None:
            pass

        def flush_due(self) -> None:
            timed.set()

        def close(self) -> None:
            pass

    bus.add_sink(FlushWatch())
    async with bus:
        await bus.publish(PingEvent(n=1))
        await bus.publish(PingEvent(n=2))
        timed.clear()  # the consumer has not run yet: the next routine flush is the timer's
        await asyncio.wait_for(timed.wait(), 10)
        path = tmp_path / "busy.jsonl"
        assert path.read_bytes().count(b"\n") == 2, "accepted lines stayed in memory"
        release.set()


async def test_a_value_with_surrogates_and_nan_still_gives_strict_json(tmp_path: Path) -> None:
    bus = quiet(log_dir=tmp_path, log_filename="nan.jsonl")
    bus.register_command_handler(
        DoCommand, lambda c: {"file": os.fsdecode(b"caf\xe9.txt"), "score": float("nan")}
    )
    async with bus:
        await bus.execute(DoCommand())
        await bus.publish(
            MetricEvent(
                metrics=[Metric(name="loss", value=float("nan"), tags={"f": os.fsdecode(b"\xff")})]
            )
        )
    bad: list[int] = []
    assert bus.log_path is not None
    assert len(list(read_log(bus.log_path, bad_lines=bad))) == 5  # 4 of the command, 1 metric
    assert bad == []


class BadStrError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


async def test_a_span_ended_by_an_exception_whose_str_raises() -> None:
    bus = quiet()
    async with bus:
        with pytest.raises(BadStrError):
            async with bus.span("work"):
                raise BadStrError()
        assert current_span() is None


async def test_a_session_inside_a_handler_hears_what_it_publishes() -> None:
    bus = quiet()
    inner: list[int] = []

    async def outer(event: PingEvent) -> None:
        if event.n:
            return
        async with bus.session("inside") as session:
            session.register_event_handler(PingEvent, lambda e: inner.append(e.n))
            await session.publish(PingEvent(n=7))

    bus.register_event_handler(PingEvent, outer)
    async with bus:
        await bus.publish(PingEvent(n=0))
        await bus.wait_for_events()
        await bus.publish(PingEvent(n=8))  # after the session: not heard
        await bus.wait_for_events()
    assert inner == [7]
    assert [r.session for r in bus.registrations()] == [None]


def shared_handler(event: PingEvent) -> None:
    pass


async def test_overlapping_sessions_leave_nothing_behind() -> None:
    bus = quiet()
    async with bus:
        first = bus.session("s1")
        second = bus.session("s2")
        await first.__aenter__()
        first.register_event_handler(PingEvent, shared_handler)
        await second.__aenter__()
        second.register_event_handler(PingEvent, shared_handler)
        await first.__aexit__(None, None, None)
        await second.__aexit__(None, None, None)
    assert bus.registrations() == []


def test_a_bus_left_on_a_closed_loop_starts_again_on_a_new_one() -> None:
    bus = quiet()
    handled: list[int] = []
    bus.register_event_handler(PingEvent, lambda e: handled.append(e.n))
    first = asyncio.new_event_loop()
    first.run_until_complete(bus.start())
    first.close()  # never stopped

    async def again() -> None:
        await bus.start()
        await bus.publish(PingEvent(n=1))
        await bus.wait_for_events()
        await bus.stop()

    asyncio.run(again())
    assert handled == [1]


class ListSink:
    def __init__(self, bus: MessageBus | None = None, raises: BaseException | None = None) -> None:
        self.bus, self.raises, self.seen = bus, raises, 0

    def write(self, record: Record) -> None:
        self.seen += 1
        if self.bus is not None:
            self.bus.remove_sink(self)
        if self.raises is not None:
            raise self.raises

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


async def test_sinks_that_remove_themselves_or_raise_cancellation_spoil_nothing() -> None:
    bus = quiet()
    leaving = ListSink(bus)
    cancelling = ListSink(raises=asyncio.CancelledError())
    last = ListSink()
    for sink in (leaving, cancelling, last):
        bus.add_sink(sink)
    handled: list[int] = []
    bus.register_event_handler(PingEvent, lambda e: handled.append(e.n))
    async with bus:
        await bus.publish(PingEvent(n=1))
        await bus.publish(PingEvent(n=2))
        await bus.wait_for_events()
    assert leaving.seen == 1
    assert handled == [1, 2]
    assert last.seen >= 2
    assert bus.stats.sink_failures >= 2


async def test_a_handler_that_swallows_the_timeout_still_fails() -> None:
    bus = quiet()

    async def stubborn(command: DoCommand) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "partial"
        return "never"

    bus.register_command_handler(DoCommand, stubborn)
    async with bus:
        result = await bus.execute(DoCommand(), timeout=0.05)
    assert not result.success and result.error_type == "TimeoutError"


async def test_base_fields_assigned_anything_still_give_valid_lines(tmp_path: Path) -> None:
    bus = quiet(log_dir=tmp_path, log_filename="odd.jsonl")
    sneaky = PingEvent(n=1)
    sneaky.id = 'x","kind":"command'  # type: ignore[assignment]
    late = PingEvent(n=2)
    late.timestamp = "2026-01-01"  # type: ignore[assignment]
    async with bus:
        await bus.publish(sneaky)
        await bus.publish(late)
    assert bus.log_path is not None
    lines = [json.loads(line) for line in bus.log_path.read_text().splitlines()]
    assert [(line["kind"], line["data"]["n"]) for line in lines] == [("event", 1), ("event", 2)]
    assert bus.stats.sink_failures == 0


@pytest.mark.timeout(60)
async def test_waiting_ends_while_another_thread_keeps_publishing() -> None:
    bus = quiet()
    stop = threading.Event()

    def busy(event: PingEvent) -> None:
        spin_until = time.perf_counter() + 0.003
        while time.perf_counter() < spin_until:
            pass

    bus.register_event_handler(PingEvent, busy)

    def flood() -> None:
        async def run() -> None:
            while not stop.is_set():
                await bus.publish(PingEvent())

        asyncio.run(run())

    async with bus:
        thread = threading.Thread(target=flood)
        thread.start()
        try:
            await bus.publish(PingEvent(n=1))
            await asyncio.wait_for(bus.wait_for_events(), 20)  # not until the flood ends
        finally:
            stop.set()
            thread.join()


@pytest.mark.parametrize(
    "line",
    [
        b'{"kind":"banana","type":"X","module":"m","id":"1","timestamp":"2026-01-01T00:00:00"}',
        b'{"kind":"event","type":"X","module":"m","id":"1","timestamp":"2026-01-01T00:00:00",'
        b'"data":"abc"}',
        b'{"kind":"event","type":"X","module":"m","id":"1","timestamp":"2026-01-01T00:00:00",'
        b'"trace_id":5}',
    ],
)
def test_the_codec_refuses_envelopes_it_could_not_turn_back(line: bytes) -> None:
    from llmgine import LogFormatError

    with pytest.raises(LogFormatError):
        decode(line)
