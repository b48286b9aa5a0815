"""A call-cache hit through the engine, against the same prompt on the offline model uncached.

Baseline: ``await bus.execute(PromptCommand(...))`` through an ``LLMEngine(model="offline")``
with no cache: the whole turn (command, spans, events, JSONL log, the offline model).
Measured: the same prompt through an engine with ``cache=<file>`` whose answer is already
kept: every turn is a hit. Two rows: the default cache (a repeated hit comes from the
answers it used last, in memory) and ``LLMCache(path, recent=0)``, where every hit is a
SQLite read on the cache's thread (as the first hit after a kernel restart is).
Same bus settings, history bounded to one turn so every request is the same; the two
alternate in rounds so drift hits both. Target: the hit rate >= 0.7x the offline rate
(the lookup costs less than the rest of the turn).

Also printed: the cache step alone (``Cached(...).complete``, a hit) against the offline
provider called directly, and one SQLite read on the cache's thread.

    python benchmarks/cache.py [--turns 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from llmgine.bus import MessageBus
from llmgine.llm import ChatMessage, LLMEngine, LLMRequest, OfflineProvider, PromptCommand
from llmgine.llm.cache import LLMCache
from llmgine.llm.pipeline import Cached

PROMPT = "Summarize the benefits of an event bus for LLM applications in one line."


def quiet_bus(log_dir: Path, name: str) -> MessageBus:
    return MessageBus(
        log_dir=log_dir,
        log_filename=f"{name}.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
    )


async def engine_turns(turns: int, log_dir: Path, cache: LLMCache | None) -> float:
    """Turns per second of one prompt through the engine, with ``cache`` or without."""
    bus = quiet_bus(log_dir, "hit" if cache else "offline")
    LLMEngine(bus, model="offline", max_history=2, cache=cache)
    async with bus:
        await bus.execute(PromptCommand(prompt=PROMPT))  # warm: the answer is kept
        start = time.perf_counter()
        for _ in range(turns):
            result = await bus.execute(PromptCommand(prompt=PROMPT))
            assert result.success, result.error
        await bus.wait_for_events()
        elapsed = time.perf_counter() - start
    return turns / elapsed


async def step_calls(turns: int, cache: LLMCache) -> tuple[float, float, float]:
    """Microseconds per call: the offline provider, a Cached hit, one store read."""
    provider = OfflineProvider()
    step = Cached(provider, cache)
    request = LLMRequest(model="offline", messages=[ChatMessage(role="user", content=PROMPT)])
    await step.complete(request)
    key = cache.key(request, provider=provider.name, endpoint=provider.endpoint)

    async def per_call(call: object) -> float:
        start = time.perf_counter()
        for _ in range(turns):
            await call()  # type: ignore[operator]
        return (time.perf_counter() - start) / turns * 1e6

    direct = await per_call(lambda: provider.complete(request))
    hit = await per_call(lambda: step.complete(request))
    read = await per_call(lambda: cache.store.get(key))
    await cache.aclose()
    return direct, hit, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    offline_rates, hit_rates, file_rates, ratios, file_ratios = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for round_ in range(1, args.rounds + 1):
            offline = asyncio.run(engine_turns(args.turns, folder, None))
            cache = LLMCache(folder / "calls.sqlite3")
            hit = asyncio.run(engine_turns(args.turns, folder, cache))
            cache.close()
            cache = LLMCache(folder / "calls.sqlite3", recent=0)
            from_file = asyncio.run(engine_turns(args.turns, folder, cache))
            cache.close()
            offline_rates.append(offline)
            hit_rates.append(hit)
            file_rates.append(from_file)
            ratios.append(hit / offline)
            file_ratios.append(from_file / offline)
            print(
                f"round {round_}: offline {offline:,.0f} turns/s  cache hit {hit:,.0f} turns/s "
                f"({hit / offline:.2f}x)  hit read from the file {from_file:,.0f} turns/s "
                f"({from_file / offline:.2f}x)"
            )
        steps = [
            asyncio.run(step_calls(args.turns, LLMCache(folder / "steps.sqlite3", recent=0)))
            for _ in range(args.rounds)
        ]
    offline, hit = statistics.median(offline_rates), statistics.median(hit_rates)
    print()
    print(f"offline model through LLMEngine, no cache: {offline:,.0f} turns/s (median)")
    print(
        f"cache hit through LLMEngine: {hit:,.0f} turns/s (median); median ratio "
        f"{statistics.median(ratios):.2f}x the offline turn (target >= 0.7x)"
    )
    print(
        f"cache hit read from the file (recent=0): {statistics.median(file_rates):,.0f} turns/s "
        f"(median); median ratio {statistics.median(file_ratios):.2f}x the offline turn"
    )
    direct, step, read = (statistics.median(s[i] for s in steps) for i in range(3))
    print(
        f"per call (medians): offline provider {direct:,.0f} us, Cached hit from the file "
        f"{step:,.0f} us, "
        f"one SQLite read on the cache's thread {read:,.0f} us"
    )


if __name__ == "__main__":
    main()
