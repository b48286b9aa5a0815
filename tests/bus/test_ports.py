"""A bridge attaches through the bus's port: a new one is a new class, not surgery."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from llmgine.bus import MessageBus
from llmgine.bus.middleware import CallNext
from llmgine.bus.ports import BusPort
from llmgine.bus.registry import HandlerEntry
from llmgine.errors import HandlerNotFoundError, LLMgineError
from llmgine.messages import Command, CommandResult, Event
from llmgine.observability.sinks import Record


class AddCommand(Command):
    a: int
    b: int


class PingEvent(Event):
    n: int


class MemoryBridge:
    """Joins the buses of one process that connect to one name: a bridge in ~40 lines."""

    hubs: ClassVar[dict[str, list[MemoryBridge]]] = {}

    def __init__(self, port: BusPort, url: str, namespace: str, **options: Any) -> None:
        self.port = port
        self.peers = self.hubs.setdefault(f"{url}/{namespace}", [])
        self.tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self.peers.append(self)

    async def close(self) -> None:
        self.peers.remove(self)
        await asyncio.gather(*self.tasks)

    def forward(self, record: Record) -> None:
        event = record.message
        if record.kind != "event" or not isinstance(event, Event):
            return
        for peer in self.peers:
            if peer is not self and peer.port.handles_event(type(event)):
                task = asyncio.get_running_loop().create_task(peer.port.deliver(event, None))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def command_entry(
        self, command_type: type[Command], timeout: float | None = None
    ) -> HandlerEntry:
        ports = [
            peer.port
            for peer in self.peers
            if peer is not self
            and any(row.message_type is command_type for row in peer.port.registrations())
        ]
        if not ports:
            raise HandlerNotFoundError(f"No bus on this hub handles {command_type.__name__}.")
        port, entry = ports[0], ports[0].command_handler(command_type)

        async def run(command: Command) -> Any:
            return await port.call_handler(entry, command, timeout)

        return HandlerEntry(run, ("memory", command_type), "memory", True, -1, None)


class MemoryBus(MessageBus):
    bridge_factory = MemoryBridge


def quiet() -> MemoryBus:
    return MemoryBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)


@pytest.mark.timeout(30)
async def test_a_bridge_of_its_own_carries_commands_and_events_between_buses() -> None:
    caller, worker = quiet(), quiet()
    heard: list[int] = []
    pinged = asyncio.Event()

    def on_ping(event: PingEvent) -> None:
        heard.append(event.n)
        pinged.set()

    worker.register_command_handler(AddCommand, lambda command: command.a + command.b)
    worker.register_event_handler(PingEvent, on_ping)
    seen: list[str] = []

    async def watch(command: Command, call_next: CallNext) -> CommandResult:
        seen.append(type(command).__name__)
        return await call_next(command)

    caller.add_middleware(watch)
    async with caller, worker:
        await worker.connect("memory://", "t")
        await caller.connect("memory://", "t")
        assert isinstance(caller.remote, MemoryBridge)
        result = await caller.execute(AddCommand(a=2, b=3), timeout=10)
        assert (result.success, result.result) == (True, 5)
        await caller.publish(PingEvent(n=7))
        await asyncio.wait_for(pinged.wait(), 10)
        await caller.disconnect()
        assert caller.remote is None
        with pytest.raises(HandlerNotFoundError):
            await caller.execute(AddCommand(a=1, b=1))
    assert heard == [7]
    assert seen == ["AddCommand"]  # a command nobody handles raises before any middleware


@pytest.mark.timeout(30)
async def test_a_bridge_running_a_handler_past_its_timeout_gets_an_error_of_the_tree() -> None:
    bus = quiet()

    async def stuck(command: AddCommand) -> int:
        await asyncio.Event().wait()
        return 0

    bus.register_command_handler(AddCommand, stuck)
    async with bus:
        await bus.connect("memory://", "timeouts")
        port = bus.remote.port
        with pytest.raises(TimeoutError) as caught:
            await port.call_handler(port.command_handler(AddCommand), AddCommand(a=1, b=2), 0.05)
    assert isinstance(caught.value, LLMgineError)
    assert str(caught.value) == "the handler did not finish within 0.05 s"


class LateReplyBridge(MemoryBridge):
    """A bridge whose reply is found just after the caller's deadline, as Redis's can be.

    The remote caller gives up at its deadline, then records the abandon; a reply the
    worker recorded first is found on that last round trip, after the deadline, and is
    the command's result (its effect happened).
    """

    async def command_entry(
        self, command_type: type[Command], timeout: float | None = None
    ) -> HandlerEntry:
        assert timeout is not None

        async def run(command: Command) -> Any:
            with pytest.raises(TimeoutError):  # the caller's own deadline: it stops waiting
                await asyncio.wait_for(asyncio.Event().wait(), timeout)
            found = asyncio.Event()  # the abandon's round trip, which finds the reply
            asyncio.get_running_loop().call_later(0.05, found.set)
            await found.wait()
            return "the worker's reply, recorded before the abandon"

        return HandlerEntry(run, ("late", command_type), "late", True, -1, None)


class LateReplyBus(MessageBus):
    bridge_factory = LateReplyBridge


@pytest.mark.timeout(30)
async def test_a_bridge_keeps_its_own_deadline_so_a_reply_found_at_it_is_the_result() -> None:
    bus = LateReplyBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    async with bus:
        await bus.connect("late://", "t")
        result = await bus.execute(AddCommand(a=1, b=2), timeout=0.1)
    assert result.success
    assert result.result == "the worker's reply, recorded before the abandon"


class WithdrawnEvent(Event):
    n: int = 0


@pytest.mark.timeout(30)
async def test_two_stops_at_once_leave_only_after_the_first_callbacks_published() -> None:
    caller, worker = quiet(), quiet()
    heard: list[int] = []
    both_heard = asyncio.Event()

    def on_withdrawn(event: WithdrawnEvent) -> None:
        heard.append(event.n)
        both_heard.set()

    worker.register_event_handler(WithdrawnEvent, on_withdrawn)
    pending = [1]
    released = asyncio.Event()

    async def withdraw_all() -> None:  # as an engine's approvals do: take, wait, publish
        taken = list(pending)
        pending.clear()
        await released.wait()
        for n in taken:
            await caller.publish(WithdrawnEvent(n=n))

    caller.on_stop(withdraw_all, first=True)
    async with worker:
        await worker.connect("memory://", "two-stops")
        await caller.start()
        await caller.connect("memory://", "two-stops")
        # The withdrawal takes a while (a prompt ending): the second stop must not leave
        # the shared bus meanwhile.
        asyncio.get_running_loop().call_later(0.2, released.set)
        await asyncio.wait_for(asyncio.gather(caller.stop(), caller.stop()), 10)
        assert caller.remote is None
        await asyncio.wait_for(both_heard.wait(), 10)  # it reached the other bus, too
        await worker.wait_for_events()
    assert heard == [1]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("trouble", ["cancelled", "hangs", "raises"])
async def test_a_first_stop_callback_that_fails_or_hangs_still_lets_the_bus_leave_and_stop(
    trouble: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmgine.bus import lifecycle

    monkeypatch.setattr(lifecycle, "FIRST_CALLBACKS_TIMEOUT", 0.2)
    bus = quiet()
    after: list[str] = []

    async def troubled() -> None:
        if trouble == "cancelled":
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.cancel()
            await future
        elif trouble == "hangs":
            await asyncio.Event().wait()
        else:
            raise RuntimeError("the callback broke")

    async def later() -> None:
        after.append("ran")

    bus.on_stop(troubled, first=True)
    bus.on_stop(later)
    await bus.start()
    await bus.connect("memory://", f"trouble-{trouble}")
    await asyncio.wait_for(bus.stop(), 10)  # the callback's trouble is logged, not raised
    assert bus.remote is None
    assert not bus.is_running
    assert after == ["ran"]


@pytest.mark.timeout(30)
async def test_a_stop_its_caller_gave_up_on_is_done_so_a_start_after_it_stays_started() -> None:
    bus = quiet()
    gate = asyncio.Event()

    async def in_flight() -> None:  # work that ends a little later
        await gate.wait()

    bus.on_stop(in_flight, first=True)
    await bus.start()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bus.stop(), 0.05)
    await bus.start()
    gate.set()
    heard: list[int] = []
    bus.register_event_handler(PingEvent, lambda e: heard.append(e.n))
    await bus.publish(PingEvent(n=1))
    await bus.wait_for_events()
    assert bus.is_running and heard == [1]
    await bus.stop()
