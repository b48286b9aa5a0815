"""MessageBus throughput and memory, as ratios against a same-run baseline.

Baseline: the bare work a logged publish needs -- build the same pydantic event,
one asyncio.Queue hop, ``model_dump_json``, a buffered file write. Each contender runs
in a fresh process in every round, so none inherits another's heap or GC state.
Measured: ``bus.publish`` (JSONL on, one trivial async handler), ``bus.execute``
(one trivial async handler; each execute also publishes a result and two span events),
the bare work an execute must do by contract without any bus (its five messages built,
its four lines encoded and written: the ceiling of execute),
1,000 concurrent publishers on a queue of 100 (almost all of them waiting for room at
any time) against the single publisher of the same round, and RSS growth over a
million published events.

    python benchmarks/bus.py [--events 50000] [--rounds 9] [--memory-events 1000000]

Targets: publish >= 0.8x baseline, execute >= 0.3x baseline, 1,000 waiting publishers
>= 0.5x the single publisher, RSS growth <= 50 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmgine.bus import MessageBus
from llmgine.messages import Command, CommandResult, CommandResultEvent, Event
from llmgine.messages.base import utc_now
from llmgine.observability.codec import encode
from llmgine.observability.events import TraceEvent
from llmgine.observability.spans import new_span_context


class BenchEvent(Event):
    n: int
    text: str


class BenchCommand(Command):
    n: int


TEXT = "the quick brown fox jumps over the lazy dog"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def baseline(n: int, path: Path) -> float:
    queue: asyncio.Queue[BenchEvent | None] = asyncio.Queue(maxsize=10_000)
    with path.open("w", encoding="utf-8") as out:

        async def consume() -> None:
            while (event := await queue.get()) is not None:
                out.write(event.model_dump_json() + "\n")

        start = time.perf_counter()
        consumer = asyncio.create_task(consume())
        for i in range(n):
            await queue.put(BenchEvent(n=i, text=TEXT))
        await queue.put(None)
        await consumer
        out.flush()
        return n / (time.perf_counter() - start)


async def execute_work(n: int, path: Path) -> float:
    """What one execute() must produce by contract, without a bus: the floor of execute.

    The command, its span's start and end events, its result and result event,
    and their four envelope lines, written to a buffered file.
    """
    with path.open("wb") as out:
        start = time.perf_counter()
        for i in range(n):
            command = BenchCommand(n=i)
            context = new_span_context()
            attributes = {"llmgine.command.type": "BenchCommand"}
            began = TraceEvent(
                name="BenchCommand",
                span_context=context,
                span_kind="CHAIN",
                start_time=utc_now(),
                attributes=attributes,
            )
            out.write(encode("command", command, context))
            out.write(encode("event", began, context))
            result = CommandResult(
                success=True, result=i, command_id=command.id, command_type="BenchCommand"
            )
            done = CommandResultEvent(command_result=result)
            out.write(encode("event", done, context))
            ended = TraceEvent(
                name="BenchCommand",
                span_context=context,
                span_kind="CHAIN",
                end_time=utc_now(),
                status="OK",
                duration_ms=0.01,
                attributes=attributes,
            )
            out.write(encode("event", ended, context))
        out.flush()
        return n / (time.perf_counter() - start)


def quiet_bus(log_dir: Path, name: str, max_queue_size: int = 1_000) -> MessageBus:
    """A bus with the JSONL log on and the console off, as the measurements need."""
    return MessageBus(
        log_dir=log_dir,
        log_filename=name,
        enable_console_metrics=False,
        enable_console_traces=False,
        max_queue_size=max_queue_size,
    )


async def bus_publish(n: int, log_dir: Path) -> float:
    bus = quiet_bus(log_dir, "publish.jsonl")

    async def handler(event: BenchEvent) -> None:
        return None

    bus.register_event_handler(BenchEvent, handler)
    await bus.start()
    start = time.perf_counter()
    for i in range(n):
        await bus.publish(BenchEvent(n=i, text=TEXT))
    await bus.stop()
    return n / (time.perf_counter() - start)


async def bus_publish_waiting(n: int, log_dir: Path, publishers: int = 1_000) -> float:
    bus = quiet_bus(log_dir, "waiting.jsonl", max_queue_size=100)

    async def handler(event: BenchEvent) -> None:
        return None

    bus.register_event_handler(BenchEvent, handler)
    per_publisher = max(1, n // publishers)

    async def publisher() -> None:
        for i in range(per_publisher):
            await bus.publish(BenchEvent(n=i, text=TEXT))

    await bus.start()
    start = time.perf_counter()
    await asyncio.gather(*(publisher() for _ in range(publishers)))
    await bus.stop()
    return per_publisher * publishers / (time.perf_counter() - start)


async def bus_execute(n: int, log_dir: Path) -> float:
    bus = quiet_bus(log_dir, "execute.jsonl")

    async def handler(command: BenchCommand) -> int:
        return command.n

    bus.register_command_handler(BenchCommand, handler)
    await bus.start()
    start = time.perf_counter()
    for i in range(n):
        await bus.execute(BenchCommand(n=i))
    await bus.stop()
    return n / (time.perf_counter() - start)


async def memory_growth(n: int, log_dir: Path) -> tuple[float, float]:
    bus = quiet_bus(log_dir, "memory.jsonl")

    async def handler(event: BenchEvent) -> None:
        return None

    bus.register_event_handler(BenchEvent, handler)
    await bus.start()
    for i in range(10_000):  # warm up caches and allocator
        await bus.publish(BenchEvent(n=i, text=TEXT))
    await bus.wait_for_events()
    gc.collect()
    before = rss_mb()
    for i in range(n):
        await bus.publish(BenchEvent(n=i, text=TEXT))
    await bus.wait_for_events()
    gc.collect()
    after = rss_mb()
    await bus.stop()
    return before, after


CONTENDERS = {
    "baseline": lambda n, d: baseline(n, d / "baseline.jsonl"),
    "publish": bus_publish,
    "execute": lambda n, d: bus_execute(n // 4, d),
    "waiting": bus_publish_waiting,
    "execute_work": lambda n, d: execute_work(n // 4, d / "work.jsonl"),
}


def measure(what: str, events: int) -> float:
    """One contender in a fresh process, so none inherits another's heap or GC state."""
    out = subprocess.run(
        [sys.executable, __file__, "--one", what, "--events", str(events)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000, help="events per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--memory-events", type=int, default=1_000_000)
    parser.add_argument("--one", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(asyncio.run(CONTENDERS[args.one](args.events, Path(tmp))))
        return
    ratios: dict[str, list[float]] = {"publish": [], "execute": [], "waiting": [], "work": []}
    rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for round_ in range(1, args.rounds + 1):
        # Interleaved rounds: machine noise hits every contender alike, and each round's
        # ratio compares runs made seconds apart. The median ratio is reported.
        base, publish, execute, waiting, work = (measure(w, args.events) for w in CONTENDERS)
        for name, rate in zip(CONTENDERS, (base, publish, execute, waiting, work), strict=True):
            rates[name].append(rate)
        ratios["publish"].append(publish / base)
        ratios["execute"].append(execute / base)
        ratios["waiting"].append(waiting / publish)
        ratios["work"].append(execute / work)
        print(
            f"round {round_}: baseline {base:,.0f}/s  publish {publish:,.0f}/s "
            f"({publish / base:.2f}x)  execute {execute:,.0f}/s ({execute / base:.2f}x; "
            f"{execute / work:.2f}x its bare work)  "
            f"1,000 waiting {waiting:,.0f}/s ({waiting / publish:.2f}x publish)"
        )
    med = statistics.median
    print()
    print(
        "baseline (pydantic event + asyncio.Queue hop + model_dump_json + buffered write): "
        f"{med(rates['baseline']):,.0f} events/s (median)"
    )
    print(
        f"bus.publish (JSONL on, 1 async handler): {med(rates['publish']):,.0f} events/s; "
        f"median ratio {med(ratios['publish']):.2f}x baseline (target >= 0.80x)"
    )
    print(
        "bus.execute (1 async handler; command + result + 2 span lines logged): "
        f"{med(rates['execute']):,.0f} commands/s; "
        f"median ratio {med(ratios['execute']):.2f}x baseline (target >= 0.30x)"
    )
    print(
        "  its bare work (5 messages built, 4 lines encoded and written, no bus): "
        f"{med(rates['execute_work']):,.0f}/s = "
        f"{med(rates['execute_work']) / med(rates['baseline']):.2f}x "
        f"baseline, the most execute could reach; execute is {med(ratios['work']):.2f}x of it"
    )
    print(
        "1,000 publishers on a queue of 100 (each woken for its own slot): "
        f"{med(rates['waiting']):,.0f} events/s; "
        f"median ratio {med(ratios['waiting']):.2f}x the single publisher (target >= 0.50x)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        before, after = asyncio.run(memory_growth(args.memory_events, Path(tmp)))
    print(
        f"RSS over {args.memory_events:,} published events: {before:.0f} MB -> {after:.0f} MB "
        f"= {after - before:+.1f} MB (target <= 50 MB)"
    )


if __name__ == "__main__":
    main()
