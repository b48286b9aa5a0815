"""``map`` over 2,000 rows against a bare asyncio loop with the ``openai`` SDK, same server.

    python benchmarks/batch.py [--rows 2000] [--rounds 5] [--latency 0.02] [--profile]

The server (``benchmarks/batch_server.py``, a process of its own so it shares no GIL
with the client) answers every Chat Completions request after ``--latency`` seconds and
counts the requests it saw and the most it had in flight at once. In each round,
alternating which goes first:

- bare loop: ``AsyncOpenAI`` on the server, ``asyncio.gather`` over the rows behind a
  ``Semaphore(16)``, each row's prompt ``str.format``-ed from its review;
- ``map``: ``await engine.map(df, template, concurrency=16, progress=False)``, an
  ``LLMEngine`` with ``OpenAIProvider`` on the same server, the bus logging to JSONL (as
  ``MessageBus()`` does by default), and the same with ``log_dir=None``;
- the cached re-run: the same ``map`` again on the same engine (as re-running the cell),
  and on a new bus and engine (as after a kernel restart: every answer read from the
  cache file); the server must see no request.

Each ``map`` run has a ``cache_salt`` of its own, so its first run misses the cache
(``map`` asks for the cache: the first run writes every answer, as a user's does).
Printed: rows/s of each and the CPU it spent a row (all the process's threads), the
median of the per-round ratios (targets: ``map`` >= 0.9x the bare loop; the cached
re-run >= 20x ``map``'s first run with 0 requests at the server), the peak of requests
in flight at the server (<= 16), and the peak RSS and Python allocation growth of one
``map`` of 200 and of 2,000 rows, each in a fresh process.

16 requests in flight at 20 ms allow 800 rows/s; a client that needs more than 1.25 ms
of CPU a row cannot reach it, so on a busy machine the rates follow the CPU a row
rather than the latency. ``--profile`` prints the CPU a row of each layer (the bare
SDK, the engine without cache and log, the engine, ``map``; first and cached runs) and
where ``map``'s time goes by area (cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, OpenAIProvider, Price, PromptCommand

CONCURRENCY = 16
MODEL = "bench-gpt"
TEMPLATE = (
    "Classify the sentiment of this product review as positive, negative or neutral. "
    "Answer with one word.\n\nReview: {review}"
)
PRICES = {MODEL: Price(input_per_mtok=0.15, output_per_mtok=0.60)}
SERVER = Path(__file__).with_name("batch_server.py")

_WORDS = ("great", "broken", "fine", "slow", "sturdy", "cheap", "lovely", "noisy", "late", "ok")


def reviews(rows: int) -> pd.DataFrame:
    """``rows`` short reviews (all different, so every prompt is a request of its own)."""
    texts = [
        f"Order {i}: the kettle is {_WORDS[i % 10]}, delivery was {_WORDS[(i * 7) % 10]} "
        f"and the handle feels {_WORDS[(i * 3) % 10]}. Would I buy it again? Maybe."
        for i in range(rows)
    ]
    return pd.DataFrame(
        {"review": texts, "stars": [1 + i % 5 for i in range(rows)]},
        index=pd.Index([f"r{i:05d}" for i in range(rows)], name="id"),
    )


# ------------------------------------------------------------------ the server


@contextmanager
def bench_server(latency: float) -> Iterator[str]:
    """The server in a process of its own; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--latency", str(latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if line[:1] != ["port"]:
            raise RuntimeError(f"the benchmark server did not start: {line}")
        yield f"http://127.0.0.1:{line[1]}/v1"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def server_call(url: str, path: str) -> dict[str, int]:
    """``GET /stats`` (or ``POST /reset``) of the benchmark server."""
    data = b"{}" if path == "reset" else None
    with urllib.request.urlopen(f"{url}/{path}", data=data, timeout=10) as answer:
        counts: dict[str, int] = json.loads(answer.read())
    return counts


async def server_says(url: str, path: str) -> dict[str, int]:
    """:func:`server_call` off the event loop."""
    return await asyncio.to_thread(server_call, url, path)


# ------------------------------------------------------------------ contenders


@dataclass
class Run:
    """One contender's run: wall and CPU seconds (all threads), what the server counted."""

    rows: int
    wall: float
    cpu: float
    server: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rows / self.wall

    @property
    def cpu_us(self) -> float:
        """CPU microseconds a row: what a busy machine cannot hide behind the latency."""
        return self.cpu / self.rows * 1e6


@asynccontextmanager
async def timed(url: str, rows: int) -> AsyncIterator[Run]:
    """Times the block; the server's counts are reset before and read after.

    Each contender starts right after a full collection, so none pays for the garbage
    (or the collector's bookkeeping) another left behind.
    """
    await server_says(url, "reset")
    gc.collect()
    run = Run(rows, 0.0, 0.0)
    wall, cpu = time.perf_counter(), time.process_time()
    yield run
    run.wall, run.cpu = time.perf_counter() - wall, time.process_time() - cpu
    run.server = await server_says(url, "stats")


async def bare_loop(url: str, frame: pd.DataFrame) -> Run:
    """The hand-written loop: ``AsyncOpenAI``, ``gather`` and a semaphore."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="sk-bench", base_url=url, max_retries=0)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(review: str) -> str:
        async with gate:
            response = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": TEMPLATE.format(review=review)}],
            )
            return response.choices[0].message.content or ""

    async with timed(url, len(frame)) as run:
        answers = await asyncio.gather(*(one(r) for r in frame["review"]))
    await client.close()
    if len(answers) != len(frame) or not all(answers):
        raise RuntimeError("the bare loop lost answers")
    return run


def engine_on(url: str, log_dir: Path | None) -> LLMEngine:
    bus = MessageBus(
        log_dir=log_dir,
        log_filename=f"map-{uuid.uuid4().hex[:6]}.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
    )
    provider = OpenAIProvider(MODEL, api_key="sk-bench", base_url=url)
    return LLMEngine(bus, provider=provider, prices=PRICES)


async def timed_map(
    engine: LLMEngine, url: str, frame: pd.DataFrame, salt: str, *, cached: bool
) -> Run:
    """One ``map`` over ``frame``, checked: every row answered, from the cache or not."""
    async with timed(url, len(frame)) as run:
        result = await engine.map(
            frame, TEMPLATE, concurrency=CONCURRENCY, progress=False, cache_salt=salt
        )
    errors = result["error"].notna().sum()
    if len(result) != len(frame) or errors or not (result["cached"] == cached).all():
        first = result["error"].dropna().head(1).tolist()
        raise RuntimeError(f"map went wrong: {errors} errors in {len(result)} rows {first}")
    return run


async def map_then_rerun(
    url: str, frame: pd.DataFrame, log_dir: Path | None, salt: str
) -> tuple[Run, Run]:
    """A first ``map``, then the same ``map`` again on the same engine (all cached)."""
    engine = engine_on(url, log_dir)
    async with engine.bus:
        first = await timed_map(engine, url, frame, salt, cached=False)
        again = await timed_map(engine, url, frame, salt, cached=True)
        await engine.aclose()  # the SDK client's connections, on this loop
    return first, again


async def rerun_after_restart(
    url: str, frame: pd.DataFrame, log_dir: Path | None, salt: str
) -> Run:
    """The same ``map`` on a new bus and engine: every answer read from the cache file."""
    engine = engine_on(url, log_dir)
    async with engine.bus:
        run = await timed_map(engine, url, frame, salt, cached=True)
        await engine.aclose()
    return run


# ------------------------------------------------------------------ rounds


class Rounds:
    """Each contender's runs, round by round."""

    def __init__(self, url: str, frame: pd.DataFrame, folder: Path) -> None:
        self.url, self.frame, self.folder = url, frame, folder
        self.runs: dict[str, list[Run]] = {
            k: [] for k in ("bare", "map", "quiet", "again", "restart")
        }

    def one(self, number: int) -> str:
        salt = f"round-{number}-{uuid.uuid4().hex[:6]}"
        url, frame, folder = self.url, self.frame, self.folder
        if number % 2:  # alternate who goes first, so drift hits both
            bare = asyncio.run(bare_loop(url, frame))
            logged, again = asyncio.run(map_then_rerun(url, frame, folder, salt))
            quiet, _ = asyncio.run(map_then_rerun(url, frame, None, salt + "-quiet"))
        else:
            quiet, _ = asyncio.run(map_then_rerun(url, frame, None, salt + "-quiet"))
            logged, again = asyncio.run(map_then_rerun(url, frame, folder, salt))
            bare = asyncio.run(bare_loop(url, frame))
        restart = asyncio.run(rerun_after_restart(url, frame, folder, salt))
        for name, run in zip(self.runs, (bare, logged, quiet, again, restart), strict=True):
            self.runs[name].append(run)
        return (
            f"round {number}: bare loop {bare.rate:,.0f} rows/s ({bare.cpu_us:,.0f} us CPU a "
            f"row)  map {logged.rate:,.0f} ({logged.rate / bare.rate:.2f}x; "
            f"{logged.cpu_us:,.0f} us)  map, no log {quiet.rate:,.0f} "
            f"({quiet.rate / bare.rate:.2f}x; {quiet.cpu_us:,.0f} us)  cached re-run "
            f"{again.rate:,.0f} ({again.rate / logged.rate:.1f}x; {again.cpu_us:,.0f} us)  "
            f"on a new engine {restart.rate:,.0f} ({restart.rate / logged.rate:.1f}x)"
        )

    def ratio(self, name: str, base: str) -> str:
        """``"0.93x (rounds 0.90x-0.95x)"``: the median of the per-round ratios."""
        pairs = zip(self.runs[name], self.runs[base], strict=True)
        ratios = [a.rate / b.rate for a, b in pairs]
        return f"{statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}x-{max(ratios):.2f}x)"

    def rate(self, name: str) -> str:
        runs = self.runs[name]
        rate = statistics.median(r.rate for r in runs)
        cpu = statistics.median(r.cpu_us for r in runs)
        return f"{rate:,.0f} rows/s ({cpu:,.0f} us CPU a row)"

    def most(self, name: str, count: str) -> int:
        return max(r.server[count] for r in self.runs[name])


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def rounds(url: str, rows: int, count: int, folder: Path) -> None:
    frame = reviews(rows)
    asyncio.run(bare_loop(url, frame.head(50)))  # warm: imports, the server
    asyncio.run(map_then_rerun(url, frame.head(50), folder, "warm"))
    bench = Rounds(url, frame, folder)
    print(f"load average before: {load()} (the machine's 1-minute load, {os.cpu_count()} CPUs)")
    for number in range(1, count + 1):
        print(bench.one(number), flush=True)
    print(f"load average after: {load()}")
    peak = max(bench.most(name, "peak_in_flight") for name in ("bare", "map", "quiet"))
    rerun_requests = max(bench.most(name, "requests") for name in ("again", "restart"))
    print()
    print(
        f"{rows:,} rows, concurrency {CONCURRENCY}, {SETTINGS.latency * 1000:.0f} ms a request "
        f"(at most {CONCURRENCY / SETTINGS.latency:,.0f} rows/s); medians of {count} rounds:"
    )
    print(f"  (a) bare loop (AsyncOpenAI, gather, Semaphore(16)): {bench.rate('bare')}")
    print(f"      map, JSONL log on: {bench.rate('map')}")
    print(f"        = {bench.ratio('map', 'bare')} the bare loop (target >= 0.9x)")
    print(f"      map, log_dir=None: {bench.rate('quiet')}")
    print(f"        = {bench.ratio('quiet', 'bare')} the bare loop")
    print(f"  (b) cached re-run, same engine: {bench.rate('again')}")
    print(f"        = {bench.ratio('again', 'map')} map's first run (target >= 20x)")
    print(f"      cached re-run on a new engine (from the file): {bench.rate('restart')}")
    print(f"        = {bench.ratio('restart', 'map')} map's first run")
    print(f"      requests at the server during the re-runs: {rerun_requests} (target 0)")
    print(f"  (c) peak requests in flight at the server: {peak} (target <= {CONCURRENCY})")


# ------------------------------------------------------------------ memory


def kib(field_name: str) -> int:
    """A field of ``/proc/self/status`` in KiB (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/self/status")


def reset_peak_rss() -> int:
    """Start the peak RSS (``VmHWM``) again from now; the RSS now, in KiB."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return kib("VmRSS")


async def memory_child(url: str, rows: int, folder: Path, trace: bool) -> None:
    """In a fresh process: the peak RSS growth (or, ``trace``, Python's) of one ``map``."""
    warm = engine_on(url, folder)
    async with warm.bus:  # imports, the cache file, the thread pools: there before we measure
        await timed_map(warm, url, reviews(50), f"warm-{uuid.uuid4().hex[:6]}", cached=False)
        await warm.aclose()
    frame = reviews(rows)
    engine = engine_on(url, folder)
    salt = f"memory-{uuid.uuid4().hex[:6]}"
    async with engine.bus:
        before = reset_peak_rss()
        if trace:
            tracemalloc.start()
        run = await timed_map(engine, url, frame, salt, cached=False)
        growth = tracemalloc.get_traced_memory()[1] // 1024 if trace else kib("VmHWM") - before
        tracemalloc.stop()
        await engine.aclose()
    print(json.dumps({"growth_kib": growth, **run.server}))


def memory(url: str, folder: Path) -> None:
    figures = {}
    for trace in (False, True):
        for rows in (200, 2_000):
            child = subprocess.run(
                [sys.executable, __file__, "--memory-child", url, str(rows), str(folder)]
                + (["--trace"] if trace else []),
                capture_output=True,
                text=True,
            )
            if child.returncode:
                raise RuntimeError(f"the memory run of {rows} rows failed:\n{child.stderr}")
            figures[trace, rows] = json.loads(child.stdout.strip().splitlines()[-1])

    def growth(trace: bool) -> str:
        small, big = figures[trace, 200]["growth_kib"], figures[trace, 2_000]["growth_kib"]
        return (
            f"{small / 1024:.1f} MB / {big / 1024:.1f} MB (~{(big - small) / 1_800:.1f} KiB a row)"
        )

    print("      one map in a fresh process, 200 rows / 2,000 rows:")
    print(f"        peak RSS growth {growth(False)}")
    print(f"        Python allocations at their peak (tracemalloc) {growth(True)}")
    print(
        "        peak requests in flight "
        + " / ".join(str(figures[False, n]["peak_in_flight"]) for n in (200, 2_000))
        + ", peak connections "
        + " / ".join(str(figures[False, n]["peak_connections"]) for n in (200, 2_000))
    )


# ------------------------------------------------------------------ profile


async def engine_loop(
    engine: LLMEngine, url: str, frame: pd.DataFrame, salt: str, *, cache: bool = True
) -> Run:
    """The engine without ``map``: ``bus.execute(PromptCommand)`` per row, a semaphore."""
    gate = asyncio.Semaphore(CONCURRENCY)
    run_id = uuid.uuid4().hex[:6]

    async def one(position: int, review: str) -> bool:
        async with gate:
            command = PromptCommand(
                prompt=TEMPLATE.format(review=review),
                conversation_id=f"loop-{run_id}-{position}",  # one each, as map's rows
                cache=cache,
                cache_salt=salt,
            )
            return (await engine.bus.execute(command)).success

    async with timed(url, len(frame)) as run:
        answered = await asyncio.gather(*(one(i, r) for i, r in enumerate(frame["review"])))
    if not all(answered):
        raise RuntimeError("the engine loop lost answers")
    return run


AREAS = (
    ("map itself (llmgine/batch)", "llmgine/batch/"),
    ("the bus (llmgine/bus, messages)", "llmgine/bus/", "llmgine/messages/"),
    ("spans, log lines (llmgine/observability)", "llmgine/observability/"),
    ("cache (llmgine/llm/cache, pipeline/cached)", "llmgine/llm/cache/", "pipeline/cached.py"),
    ("the engine (rest of llmgine/llm)", "llmgine/llm/"),
    ("openai SDK", "site-packages/openai/"),
    ("httpx, httpcore, h11, anyio", "httpx", "httpcore", "/h11/", "/anyio/", "sniffio"),
    ("pydantic", "pydantic"),
    ("pandas, numpy", "pandas", "numpy"),
    ("asyncio", "/asyncio/"),
    ("sqlite3, json, copy, uuid, other stdlib", "/lib/python3", "{"),
)


def areas(stats: pstats.Stats, rows: int) -> str:
    """CPU microseconds a row by where the code lives (tottime, so nothing counted twice)."""
    totals: dict[str, float] = {}
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, function), (_, _, tottime, _, _) in raw.items():
        where = filename if filename != "~" else "{" + function
        name = next((a[0] for a in AREAS if any(p in where for p in a[1:])), "other")
        totals[name] = totals.get(name, 0.0) + tottime
    lines = [
        f"    {name:<44} {seconds / rows * 1e6:7,.0f} us"
        for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1])
    ]
    return "\n".join(lines)


def profile(url: str, rows: int, folder: Path) -> None:
    """Where ``map``'s time goes: CPU a row of each layer, then cProfile by area."""
    frame = reviews(rows)
    asyncio.run(map_then_rerun(url, frame.head(50), folder, "warm"))

    async def layers() -> None:
        bare = await bare_loop(url, frame)
        plain = engine_on(url, None)
        async with plain.bus:
            loop_plain = await engine_loop(plain, url, frame, "plain", cache=False)
            await plain.aclose()
        engine = engine_on(url, folder)
        salt = uuid.uuid4().hex[:6]
        async with engine.bus:
            loop_first = await engine_loop(engine, url, frame, salt)
            loop_again = await engine_loop(engine, url, frame, salt)
            salt = uuid.uuid4().hex[:6]
            map_first = await timed_map(engine, url, frame, salt, cached=False)
            map_again = await timed_map(engine, url, frame, salt, cached=True)
            print(f"CPU a row ({rows} rows, all threads of this process; wall rate):")
            for name, run in (
                ("bare loop (AsyncOpenAI)", bare),
                ("engine, no map, no cache, no log", loop_plain),
                ("engine, no map (bus.execute per row)", loop_first),
                ("map", map_first),
                ("engine, no map, all cached", loop_again),
                ("map, all cached", map_again),
            ):
                print(f"    {name:<44} {run.cpu_us:7,.0f} us  ({run.rate:,.0f} rows/s)")
            for title in ("first run", "cached re-run"):
                salt = salt if title != "first run" else uuid.uuid4().hex[:6]
                profiler = cProfile.Profile()
                profiler.enable()
                run = await timed_map(engine, url, frame, salt, cached=title != "first run")
                profiler.disable()
                stats = pstats.Stats(profiler)
                print(f"\n=== map, {title}, under cProfile: CPU a row by area")
                print(areas(stats, rows))
                stats.sort_stats("tottime").print_stats(30)
            await engine.aclose()

    asyncio.run(layers())


SETTINGS = argparse.Namespace(latency=0.02)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        url, rows, folder = sys.argv[2:5]
        asyncio.run(memory_child(url, int(rows), Path(folder), "--trace" in sys.argv))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request")
    parser.add_argument("--profile", action="store_true", help="cProfile map instead")
    options = parser.parse_args()
    SETTINGS.latency = options.latency
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["LLMGINE_CACHE_DIR"] = str(folder / "cache")  # map's default cache file
        with bench_server(options.latency) as url:
            if options.profile:
                profile(url, options.rows, folder)
                return
            rounds(url, options.rows, options.rounds, folder)
            memory(url, folder)


if __name__ == "__main__":
    main()
