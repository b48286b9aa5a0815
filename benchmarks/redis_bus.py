"""The bus over Redis against raw redis-py on the same server, in the same run.

Throughput: events/s from this process to a receiving process. The bus: ``publish``
here (no log file), a handler in the receiver counting them. Raw: pipelined ``XADD``
of the same envelope bytes here (batches of 1,000; one field per entry, as the bus's
entries have), ``XREADGROUP`` + ``XACK`` in the receiver. Each run ends when the
receiver has seen every event and said so.

Latency: the p50 round trip of ``bus.execute()`` of a trivial command handled by a
worker process, against a raw request/reply: ``XADD`` a request, the other process
``XREADGROUP``s it and ``XADD``s a reply, this one ``XREAD``s it (blocking).

    python benchmarks/redis_bus.py [--events 20000] [--round-trips 500] [--rounds 3]

Targets: bus throughput >= 0.5x raw; bus p50 round trip <= 2x raw. Each round's figures
are printed as it ends; the summary gives the medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer
from llmgine.messages import Command, Event
from llmgine.observability.codec import encode


class BenchEvent(Event):
    n: int
    text: str


class FinishedEvent(Event):
    count: int


class EchoCommand(Command):
    n: int


TEXT = "the quick brown fox jumps over the lazy dog"
NS = "bench"


def quiet_bus() -> MessageBus:
    return MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)


# ------------------------------------------------------------------ receivers


async def bus_receiver(url: str, n: int) -> None:
    bus = quiet_bus()
    seen = 0

    async def count(event: BenchEvent) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            await bus.publish(FinishedEvent(count=seen))

    bus.register_event_handler(BenchEvent, count)
    bus.register_command_handler(EchoCommand, lambda c: c.n)
    await bus.connect(url, NS)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await bus.stop()


async def raw_receiver(url: str, n: int) -> None:
    r = aioredis.Redis.from_url(url)
    await r.delete("raw:events", "raw:requests")  # a fresh start each round
    await r.xgroup_create("raw:events", "g", id="$", mkstream=True)
    await r.xgroup_create("raw:requests", "g", id="$", mkstream=True)
    stop = asyncio.Event()
    serving = asyncio.create_task(raw_serve(r, n, stop))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    stop.set()
    await serving
    await r.aclose()


async def raw_serve(r: Any, n: int, stop: asyncio.Event) -> None:
    seen = 0
    while not stop.is_set():
        # Blocks for less than redis-py's default socket timeout (5 s) when idle.
        answer = await r.xreadgroup(
            "g", "c", {"raw:events": ">", "raw:requests": ">"}, count=1000, block=1000
        )
        for stream, entries in answer or ():
            ids = [entry_id for entry_id, _ in entries]
            if stream == b"raw:requests":
                for _, fields in entries:
                    await r.xadd("raw:replies", {b"r": fields[b"m"]})
                await r.xack("raw:requests", "g", *ids)
                continue
            seen += len(entries)
            await r.xack("raw:events", "g", *ids)
            if seen >= n:
                await r.xadd("raw:done", {b"n": seen})
                seen = 0


def spawn(role: str, url: str, n: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--role", role, "--url", url, "--events", str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def finish(process: subprocess.Popen[str]) -> None:
    try:
        if process.stdin is not None:
            process.stdin.write("\n")
            process.stdin.close()
        process.wait(timeout=5)
    except (subprocess.TimeoutExpired, BrokenPipeError):
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


# ------------------------------------------------------------------ senders


async def bus_throughput(url: str, n: int) -> float:
    bus = quiet_bus()
    done = asyncio.Event()
    bus.register_event_handler(FinishedEvent, lambda e: done.set())
    await bus.connect(url, NS)
    events = [BenchEvent(n=i, text=TEXT) for i in range(n)]
    start = time.perf_counter()
    for event in events:
        await bus.publish(event)
    await asyncio.wait_for(done.wait(), timeout=300)
    elapsed = time.perf_counter() - start
    await bus.stop()
    return n / elapsed


async def raw_throughput(url: str, n: int) -> float:
    r = aioredis.Redis.from_url(url)
    last = await r.xadd("raw:done", {b"n": 0})
    lines = [encode("event", BenchEvent(n=i, text=TEXT), None) for i in range(n)]
    start = time.perf_counter()
    for i in range(0, n, 1000):
        pipe = r.pipeline(transaction=False)
        for line in lines[i : i + 1000]:
            # One field, as the bus's entries have: the name carries the sender.
            pipe.xadd("raw:events", {b"e raw": line})
        await pipe.execute()
    await r.xread({"raw:done": last}, count=1, block=300_000)
    elapsed = time.perf_counter() - start
    await r.aclose()
    return n / elapsed


async def bus_round_trips(url: str, count: int) -> float:
    bus = quiet_bus()
    await bus.connect(url, NS)
    for i in range(20):
        await bus.execute(EchoCommand(n=i))  # warm up
    times = []
    for i in range(count):
        start = time.perf_counter()
        result = await bus.execute(EchoCommand(n=i))
        times.append(time.perf_counter() - start)
        assert result.result == i, result
    await bus.stop()
    return statistics.median(times) * 1000


async def raw_round_trips(url: str, count: int) -> float:
    r = aioredis.Redis.from_url(url)
    last: Any = (await r.xadd("raw:replies", {b"r": b""})).decode()
    line = encode("command", EchoCommand(n=0), None)
    times = []
    for i in range(count + 20):
        start = time.perf_counter()
        await r.xadd("raw:requests", {b"m": line})
        answer = await r.xread({"raw:replies": last}, count=1, block=10_000)
        last = answer[0][1][0][0]
        if i >= 20:
            times.append(time.perf_counter() - start)
    await r.aclose()
    return statistics.median(times) * 1000


def run(role: str, url: str, n: int) -> Any:
    if role == "bus-receiver":
        return asyncio.run(bus_receiver(url, n))
    if role == "raw-receiver":
        return asyncio.run(raw_receiver(url, n))
    raise SystemExit(f"unknown role {role}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--role")
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.role:
        run(args.role, args.url, args.events)
        return
    rows: dict[str, list[float]] = {k: [] for k in ("bus", "raw", "bus_rt", "raw_rt")}
    with RedisServer() as server:
        url = server.url
        for _ in range(args.rounds):
            raw = spawn("raw-receiver", url, args.events)
            rows["raw"].append(asyncio.run(raw_throughput(url, args.events)))
            rows["raw_rt"].append(asyncio.run(raw_round_trips(url, args.round_trips)))
            finish(raw)
            receiver = spawn("bus-receiver", url, args.events)
            rows["bus"].append(asyncio.run(bus_throughput(url, args.events)))
            rows["bus_rt"].append(asyncio.run(bus_round_trips(url, args.round_trips)))
            finish(receiver)
            print(
                f"round {len(rows['bus'])}: events/s bus {rows['bus'][-1]:,.0f} "
                f"raw {rows['raw'][-1]:,.0f} ({rows['bus'][-1] / rows['raw'][-1]:.2f}x); "
                f"p50 ms bus {rows['bus_rt'][-1]:.3f} raw {rows['raw_rt'][-1]:.3f} "
                f"({rows['bus_rt'][-1] / rows['raw_rt'][-1]:.2f}x)",
                flush=True,
            )
    bus, raw = statistics.median(rows["bus"]), statistics.median(rows["raw"])
    bus_rt, raw_rt = statistics.median(rows["bus_rt"]), statistics.median(rows["raw_rt"])
    print(f"events/s   bus {bus:10,.0f}   raw redis-py {raw:10,.0f}   ratio {bus / raw:.2f}x")
    rt = bus_rt / raw_rt
    print(f"p50 ms     bus {bus_rt:10.3f}   raw redis-py {raw_rt:10.3f}   ratio {rt:.2f}x")
    print(
        f"targets: throughput >= 0.5x ({'met' if bus / raw >= 0.5 else 'NOT met'}), "
        f"round trip <= 2x ({'met' if bus_rt / raw_rt <= 2 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
