"""Traces across processes: a caller's log and a worker's log, both read, over one real Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmgine.analysis import load_events, traces_frame
from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer
from llmgine.messages import Command


class RemoteParityCommand(Command):
    n: int


def _bus(folder: Path) -> MessageBus:
    return MessageBus(log_dir=folder, enable_console_metrics=False, enable_console_traces=False)


@pytest.mark.timeout(120)
async def test_a_failed_remote_command_counts_one_error_in_its_trace(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    worker, caller = _bus(tmp_path / "worker"), _bus(tmp_path / "caller")

    @worker.command_handler(RemoteParityCommand)
    async def parity(cmd: RemoteParityCommand) -> int:
        if cmd.n % 2:
            raise ValueError(f"odd {cmd.n}")
        return cmd.n

    await worker.connect(redis_server.url, namespace=tmp_path.name)
    await caller.connect(redis_server.url, namespace=tmp_path.name)
    try:
        results = [await caller.execute(RemoteParityCommand(n=n)) for n in range(3)]
    finally:
        await caller.stop()
        await worker.stop()
    assert [r.success for r in results] == [True, False, True]
    both = [caller.log_path, worker.log_path]
    traces = load_events(both).llmgine.traces().sort_values("start_time")
    assert traces["span_count"].tolist() == [2, 2, 2]  # the caller's span and the worker's
    assert traces["status"].tolist() == ["OK", "ERROR", "OK"]
    assert traces["error_count"].tolist() == [0, 1, 0]  # one failed command, counted once
    # Each log alone still counts its own failure.
    for one in both:
        assert traces_frame(one)["error_count"].tolist() == [0, 1, 0]
