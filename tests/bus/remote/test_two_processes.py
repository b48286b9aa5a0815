"""One notebook-like process and one worker process share one bus over a real Redis."""

from __future__ import annotations

import asyncio

import pytest
import remote_app
from conftest import StartWorker, listened

from llmgine.bus import MessageBus
from llmgine.errors import HandlerNotFoundError
from llmgine.messages import Command


class NobodyHandlesCommand(Command):
    pass


@pytest.mark.timeout(120)
async def test_a_command_runs_in_the_worker_and_its_result_comes_back(
    caller: MessageBus, start_worker: StartWorker
) -> None:
    worker = start_worker()
    result = await caller.execute(remote_app.AddCommand(a=2, b=3))
    assert result.success, result.error
    assert result.result == 5
    pid = (await caller.execute(remote_app.WhoAmICommand())).result
    assert pid == worker.pid
    assert await asyncio.to_thread(worker.terminate) == 0


@pytest.mark.timeout(120)
async def test_a_failing_remote_handler_gives_a_failed_result_with_its_traceback(
    caller: MessageBus, start_worker: StartWorker
) -> None:
    start_worker()
    result = await caller.execute(remote_app.CrashCommand(reason="no disk"))
    assert not result.success
    assert result.error == "no disk"
    assert result.error_type == "ValueError"
    assert "raise ValueError" in result.metadata["llmgine.traceback"]


@pytest.mark.timeout(60)
async def test_execute_fails_fast_when_no_process_handles_the_type(caller: MessageBus) -> None:
    with pytest.raises(HandlerNotFoundError, match="any process connected"):
        await asyncio.wait_for(caller.execute(NobodyHandlesCommand()), timeout=5)


@pytest.mark.timeout(120)
async def test_a_stopped_worker_no_longer_takes_commands(
    caller: MessageBus, start_worker: StartWorker
) -> None:
    worker = start_worker()
    assert (await caller.execute(remote_app.AddCommand(a=1, b=1))).result == 2
    assert await asyncio.to_thread(worker.terminate) == 0
    # Raised at once, or (within a heartbeat of the worker leaving) a failed result.
    try:
        result = await caller.execute(remote_app.AddCommand(a=1, b=1))
    except HandlerNotFoundError:
        return
    assert not result.success
    assert result.error_type == "HandlerNotFoundError"


@pytest.mark.timeout(120)
async def test_events_reach_the_worker_once_each_in_order_and_its_events_come_back(
    caller: MessageBus, start_worker: StartWorker
) -> None:
    worker = start_worker()
    echoes: list[remote_app.EchoedEvent] = []
    done = asyncio.Event()

    def collect(event: remote_app.EchoedEvent) -> None:
        echoes.append(event)
        if len(echoes) == 200:
            done.set()

    caller.register_event_handler(remote_app.EchoedEvent, collect)
    await listened(caller, remote_app.PingedEvent)  # the worker just started
    for n in range(200):
        await caller.publish(remote_app.PingedEvent(n=n))
    await asyncio.wait_for(done.wait(), timeout=60)
    assert [e.n for e in echoes] == list(range(200))
    assert {e.worker for e in echoes} == {worker.pid}
    assert await asyncio.to_thread(worker.terminate) == 0
    assert len(echoes) == 200  # nothing came twice
