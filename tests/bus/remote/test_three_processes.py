"""Three processes: a caller and two workers share the load; one trace per prompt across logs."""

from __future__ import annotations

import asyncio
import os
import warnings
from pathlib import Path

import pytest
import remote_app
from conftest import StartWorker, listened

from llmgine.bus import MessageBus
from llmgine.llm import PromptCommand


@pytest.mark.timeout(180)
async def test_two_workers_share_commands_and_both_hear_every_event(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    first = await asyncio.to_thread(start_worker, max_concurrency=1)
    second = await asyncio.to_thread(start_worker, max_concurrency=1)
    commands = [remote_app.SlowCommand(seconds=0.3, runs_dir=str(tmp_path)) for _ in range(6)]
    results = await asyncio.gather(*(caller.execute(c, timeout=60) for c in commands))
    assert all(r.success for r in results)
    assert {r.result for r in results} == {first.pid, second.pid}
    completed = {name.split(".")[0] for name in os.listdir(tmp_path) if name.count("-") == 4}
    assert completed == {str(c.id) for c in commands}  # each ran once, somewhere

    echoes: list[remote_app.EchoedEvent] = []
    done = asyncio.Event()

    def collect(event: remote_app.EchoedEvent) -> None:
        echoes.append(event)
        if len(echoes) == 100:
            done.set()

    caller.register_event_handler(remote_app.EchoedEvent, collect)
    await listened(caller, remote_app.PingedEvent)
    for n in range(50):
        await caller.publish(remote_app.PingedEvent(n=n))
    await asyncio.wait_for(done.wait(), timeout=60)
    for worker in (first, second):
        assert [e.n for e in echoes if e.worker == worker.pid] == list(range(50))
    assert await asyncio.to_thread(first.terminate) == 0
    assert await asyncio.to_thread(second.terminate) == 0
    assert len(echoes) == 100


@pytest.mark.timeout(180)
async def test_the_logs_of_three_processes_show_one_trace_per_prompt(
    caller: MessageBus, start_worker: StartWorker, tmp_path: Path
) -> None:
    from llmgine.analysis import load_events, spans_frame, traces_frame

    workers = [
        await asyncio.to_thread(start_worker, "remote_app:setup_engine", max_concurrency=1)
        for _ in range(2)
    ]
    async with caller.span("notebook cell"):
        results = await asyncio.gather(
            *(caller.execute(PromptCommand(prompt=f"hello {i}"), timeout=60) for i in range(4))
        )
    assert all(r.success for r in results), [r.error for r in results]
    for worker in workers:
        assert await asyncio.to_thread(worker.terminate) == 0
    await caller.stop()

    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert len(logs) == 3 and "caller.jsonl" in logs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = load_events(tmp_path / "logs")
    assert frame["id"].is_unique  # no message logged by two processes
    traces = traces_frame(frame)
    assert list(traces["root_name"]) == ["notebook cell"]
    spans = spans_frame(frame)
    prompts = spans[spans["name"] == "PromptCommand"]
    caller_spans = prompts[prompts["parent_id"].notna() & prompts["parent_id"].isin(spans.index)]
    # Each prompt: the caller's span, and the worker's handler span as its child.
    roots = prompts[~prompts["parent_id"].isin(prompts.index)]
    children = prompts[prompts["parent_id"].isin(prompts.index)]
    assert len(roots) == 4 and len(children) == 4
    assert set(children["parent_id"]) == set(roots.index)
    assert len(caller_spans) == 8
    llm = spans[spans["span_kind"] == "LLM"]
    assert len(llm) == 4 and set(llm["parent_id"]) == set(children.index)
    remote_callers = set(children["attributes.llmgine.remote.caller"])
    assert len(remote_callers) == 1
