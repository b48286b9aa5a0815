"""LLMEngine overhead per chat turn with the offline provider, against calling it directly.

Baseline: ``await OfflineProvider().complete(request)`` with the same one-message request.
Measured: ``await bus.execute(PromptCommand(...))`` through an ``LLMEngine`` on a bus with the
JSONL log on (console off), history bounded to one turn so every request is the same size.
Each turn logs the command, its span, the LLM call's span, the response, metrics and the result.

    python benchmarks/engine.py [--turns 5000] [--rounds 5]
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

PROMPT = "Summarize the benefits of an event bus for LLM applications in one line."


async def baseline(turns: int) -> float:
    provider = OfflineProvider()
    start = time.perf_counter()
    for _ in range(turns):
        request = LLMRequest(model="offline", messages=[ChatMessage(role="user", content=PROMPT)])
        await provider.complete(request)
    return turns / (time.perf_counter() - start)


async def engine_turns(turns: int, log_dir: Path) -> float:
    bus = MessageBus(
        log_dir=log_dir,
        log_filename="engine.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
    )
    LLMEngine(bus, model="offline", max_history=2)
    async with bus:
        start = time.perf_counter()
        for _ in range(turns):
            result = await bus.execute(PromptCommand(prompt=PROMPT))
            assert result.success, result.error
        await bus.wait_for_events()
        elapsed = time.perf_counter() - start
    return turns / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    base_rates, engine_rates, ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(1, args.rounds + 1):
            base = asyncio.run(baseline(args.turns))
            engine = asyncio.run(engine_turns(args.turns, Path(tmp)))
            base_rates.append(base)
            engine_rates.append(engine)
            ratios.append(engine / base)
            print(
                f"round {round_}: provider {base:,.0f} turns/s  engine {engine:,.0f} turns/s "
                f"({engine / base:.2f}x)"
            )
    base, engine = statistics.median(base_rates), statistics.median(engine_rates)
    print()
    print(f"offline provider called directly: {base:,.0f} turns/s (median)")
    print(
        f"LLMEngine via bus.execute, JSONL on: {engine:,.0f} turns/s (median); "
        f"median ratio {statistics.median(ratios):.2f}x the direct call"
    )
    print(f"engine overhead per turn: {(1 / engine - 1 / base) * 1e6:,.0f} us")


if __name__ == "__main__":
    main()
