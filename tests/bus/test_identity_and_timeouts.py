"""Handlers keep their identity; sessions give back what they took; timeouts mean what they say."""

from __future__ import annotations

import asyncio
import threading

import pytest

from llmgine import BusStateError, LLMEngine, ScriptedProvider
from llmgine.bus import MessageBus
from llmgine.messages import Command, Event


class SeenEvent(Event):
    n: int = 0


class WorkCommand(Command):
    pass


class Listener:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_seen(self, event: SeenEvent) -> None:
        self.seen.append(event.n)


def quiet() -> MessageBus:
    return MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)


async def test_bound_methods_of_two_instances_are_two_handlers() -> None:
    bus = quiet()
    first, second = Listener(), Listener()
    bus.register_event_handler(SeenEvent, first.on_seen)
    bus.register_event_handler(SeenEvent, second.on_seen)
    async with bus:
        await bus.publish(SeenEvent(n=1))
        await bus.wait_for_events()
    assert first.seen == [1] and second.seen == [1]
    assert len(bus.registrations()) == 2


async def test_a_second_engine_replaces_the_first_loudly(caplog: pytest.LogCaptureFixture) -> None:
    bus = quiet()
    first = LLMEngine(bus, provider=ScriptedProvider(["from the first"]))
    second = LLMEngine(bus, provider=ScriptedProvider(["from the second"]))
    assert "second LLMEngine" in caplog.text
    async with bus:
        assert await second.chat("hi") == "from the second"
        with pytest.raises(BusStateError, match="another LLMEngine replaced it"):
            await first.chat("hi")
        with pytest.raises(BusStateError, match="another LLMEngine replaced it"):
            async for _ in first.stream("hi"):
                pass


async def test_a_sessions_own_handlers_hear_what_is_published_inside_it() -> None:
    bus = quiet()
    heard: list[int] = []
    async with bus:
        async with bus.session("s1") as session:
            session.register_event_handler(SeenEvent, lambda e: heard.append(e.n))
            await session.publish(SeenEvent(n=1))
            await bus.publish(SeenEvent(n=2))
        await bus.publish(SeenEvent(n=3))  # after the session: not heard
        await bus.wait_for_events()
    assert heard == [1, 2]


async def test_a_session_gives_back_the_registration_it_overrode() -> None:
    bus = quiet()
    listener = Listener()
    bus.register_event_handler(SeenEvent, listener.on_seen)
    bus.register_command_handler(WorkCommand, lambda c: "bus")
    async with bus:
        async with bus.session("s1") as session:
            session.register_event_handler(SeenEvent, listener.on_seen)  # the same function
            await session.publish(SeenEvent(n=1))
        await bus.publish(SeenEvent(n=2))
        await bus.wait_for_events()
        assert (await bus.execute(WorkCommand())).result == "bus"
    assert listener.seen == [1, 2]
    assert [r.session for r in bus.registrations()] == [None, None]


class SlowCommand(Command):
    pass


async def test_a_timeout_holds_for_a_sync_handler() -> None:
    bus = quiet()
    release = threading.Event()

    def blocks(command: SlowCommand) -> str:
        release.wait(timeout=60)  # stands for slow sync work; released by the test
        return "late"

    bus.register_command_handler(SlowCommand, blocks)
    async with bus:
        try:
            result = await asyncio.wait_for(bus.execute(SlowCommand(), timeout=0.2), 30)
        finally:
            release.set()
    assert not result.success
    assert result.error_type == "TimeoutError"
    assert result.error == "the handler did not finish within 0.2 s"


async def test_a_handlers_own_timeout_error_is_reported_as_its_own() -> None:
    bus = quiet()

    async def upstream_timeout(command: WorkCommand) -> None:
        raise TimeoutError("the upstream service timed out")

    bus.register_command_handler(WorkCommand, upstream_timeout)
    async with bus:
        result = await bus.execute(WorkCommand(), timeout=30)
    assert result.error_type == "TimeoutError"
    assert result.error == "the upstream service timed out"


async def test_a_sync_handler_with_a_timeout_sees_its_span_and_session() -> None:
    bus = quiet()
    from llmgine import current_session_id, current_span

    seen: list[object] = []

    def look(command: WorkCommand) -> None:
        seen.extend([current_session_id(), current_span() is not None])

    bus.register_command_handler(WorkCommand, look)
    async with bus:
        result = await bus.execute(WorkCommand(session_id="s9"), timeout=10)
    assert result.success
    assert seen == ["s9", True]


@pytest.mark.timeout(60)
async def test_sync_handlers_stuck_past_their_timeout_do_not_starve_the_loops_executor() -> None:
    bus = quiet()
    release = threading.Event()

    def stuck(command: SlowCommand) -> None:
        release.wait(timeout=60)  # never returns in time; released by the test

    bus.register_command_handler(SlowCommand, stuck)
    async with bus:
        try:
            # More stuck handlers than the loop's default executor has threads (cpu + 4).
            results = await asyncio.gather(
                *(bus.execute(SlowCommand(), timeout=0.05) for _ in range(12))
            )
            assert all(r.error_type == "TimeoutError" for r in results)
            # The application's own thread work still runs at once.
            assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), 10) == 42
        finally:
            release.set()


@pytest.mark.timeout(60)
async def test_a_handler_that_cannot_start_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmgine.bus import handlers

    monkeypatch.setattr(handlers, "HANDLER_THREADS", 2)
    bus = quiet()
    release = threading.Event()
    ran: list[int] = []

    class NumberedCommand(Command):
        n: int

    def stuck(command: NumberedCommand) -> None:
        ran.append(command.n)
        release.wait(timeout=60)

    bus.register_command_handler(NumberedCommand, stuck)
    async with bus:
        try:
            first = await asyncio.gather(
                *(bus.execute(NumberedCommand(n=n), timeout=0.05) for n in range(2))
            )
            third = await bus.execute(NumberedCommand(n=2), timeout=0.05)
        finally:
            release.set()
    assert [r.error for r in first] == ["the handler did not finish within 0.05 s"] * 2
    assert third.error_type == "TimeoutError"
    assert third.error.startswith(
        "the handler did not start within 0.05 s: all 2 threads for sync handlers are busy "
        "(2 with handlers past their timeout"
    )
    assert sorted(ran) == [0, 1]  # the third never ran after its failure was reported


@pytest.mark.timeout(60)
async def test_threads_busy_with_handlers_in_time_are_not_blamed_on_timeouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llmgine.bus import handlers

    monkeypatch.setattr(handlers, "HANDLER_THREADS", 2)
    bus = quiet()
    release = threading.Event()
    started = threading.Semaphore(0)

    class LongCommand(Command):
        pass

    def long(command: LongCommand) -> str:
        started.release()
        release.wait(timeout=60)
        return "done"

    bus.register_command_handler(LongCommand, long)
    bus.register_command_handler(WorkCommand, lambda command: "quick")
    async with bus:
        try:
            running = [
                asyncio.create_task(bus.execute(LongCommand(), timeout=60)) for _ in range(2)
            ]
            for _ in range(2):
                await asyncio.to_thread(started.acquire)
            quick = await bus.execute(WorkCommand(), timeout=0.05)
        finally:
            release.set()
        results = await asyncio.gather(*running)
    assert [r.result for r in results] == ["done", "done"]
    assert "(0 with handlers past their timeout" in (quick.error or "")


async def test_an_async_handler_past_its_timeout_did_not_finish() -> None:
    bus = quiet()

    async def slow(command: WorkCommand) -> None:
        await asyncio.Event().wait()

    bus.register_command_handler(WorkCommand, slow)
    async with bus:
        result = await bus.execute(WorkCommand(), timeout=0.05)
    assert result.error == "the handler did not finish within 0.05 s"


@pytest.mark.timeout(120)
def test_a_sync_handler_stuck_for_good_does_not_keep_the_process_from_exiting() -> None:
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import asyncio, threading
        from llmgine.bus import MessageBus
        from llmgine.messages import Command

        class StuckCommand(Command):
            pass

        forever = threading.Event()

        async def main():
            bus = MessageBus(log_dir=None, enable_console_metrics=False,
                             enable_console_traces=False)
            bus.register_command_handler(StuckCommand, lambda command: forever.wait())
            async with bus:
                result = await bus.execute(StuckCommand(), timeout=0.1)
            print(result.error, flush=True)

        asyncio.run(main())
        """
    )
    # Before: the interpreter joined the handler's thread at exit, and waited forever.
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "the handler did not finish within 0.1 s"
