"""Rate limits against a rate-limited server: one process, then three sharing one limit.

    python benchmarks/rate_limits.py [--rpm 600] [--prompts 150]

A batch of prompts goes through ``LLMEngine(limits=RateLimits(requests_per_minute=R))`` to
a ``RateLimitedServer`` that allows R requests a minute and answers 429 past that. Printed:
the rate achieved against R (target >= 0.9x), failed prompts, 429s and early retries
(target 0 each). Then the same batch split over three processes whose buses share one
Redis (so one limit): their combined rate against R (target <= R plus one burst, and
>= 0.85x R).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, OpenAIProvider, Price, PromptCommand, RateLimits
from llmgine.testing import RateLimitedServer

CONCURRENCY = 16


async def batch(engine_bus: MessageBus, prompts: list[str]) -> int:
    """Send the prompts, at most CONCURRENCY at once; return how many failed."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(prompt: str) -> bool:
        async with gate:
            result = await engine_bus.execute(PromptCommand(prompt=prompt, conversation_id=prompt))
            return result.success

    return sum(not ok for ok in await asyncio.gather(*(one(p) for p in prompts)))


def engine_on(bus: MessageBus, base_url: str, rpm: float) -> LLMEngine:
    provider = OpenAIProvider("fake-gpt", api_key="sk-bench", base_url=base_url)
    prices = {"fake-gpt": Price(input_per_mtok=0.15, output_per_mtok=0.60)}
    return LLMEngine(
        bus, provider=provider, limits=RateLimits(requests_per_minute=rpm), prices=prices
    )


async def one_process(rpm: float, n: int) -> None:
    with RateLimitedServer(requests_per_minute=int(rpm)) as server:
        bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
        await bus.start()
        engine_on(bus, server.base_url, rpm)
        start = time.perf_counter()
        failed = await batch(bus, [f"one {i}" for i in range(n)])
        elapsed = time.perf_counter() - start
        await bus.stop()
        rate = n / elapsed * 60
        print(
            f"one process: {n} prompts in {elapsed:.1f} s = {rate:.0f}/min = {rate / rpm:.2f}x R "
            f"(target >= 0.9x); failed {failed}, 429s {server.refused}, early retries "
            f"{server.early_retries} (targets 0)"
        )


async def child(base_url: str, redis_url: str, namespace: str, rpm: float, n: int) -> None:
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    await bus.connect(redis_url, namespace)
    engine_on(bus, base_url, rpm)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    failed = await batch(bus, [f"{os.getpid()} {i}" for i in range(n)])
    print(f"done {failed}", flush=True)
    await bus.stop()


def three_processes(rpm: float, n: int) -> None:
    from llmgine.bus.remote import RedisServer

    redis = RedisServer()
    redis.start()
    try:
        with RateLimitedServer(requests_per_minute=int(rpm)) as server:
            namespace = f"bench{uuid.uuid4().hex[:6]}"
            args = [server.base_url, redis.url, namespace, str(rpm), str(n // 3)]
            children = [
                subprocess.Popen(
                    [sys.executable, __file__, "--child", *args],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for _ in range(3)
            ]
            for c in children:
                assert c.stdout is not None
                assert c.stdout.readline().strip() == "ready"
            start = time.perf_counter()
            for c in children:
                assert c.stdin is not None
                c.stdin.write("go\n")
                c.stdin.flush()
            failed = 0
            for c in children:
                assert c.stdout is not None
                failed += int(c.stdout.readline().split()[1])
            elapsed = time.perf_counter() - start
            for c in children:
                c.wait(timeout=60)
            total = 3 * (n // 3)
            rate = total / elapsed * 60
            burst = RateLimits(requests_per_minute=rpm).capacity(rpm)
            print(
                f"three processes, one limit over Redis: {total} prompts in {elapsed:.1f} s = "
                f"{rate:.0f}/min = {rate / rpm:.2f}x R (target <= R + one burst of {burst:.0f}, "
                f">= 0.85x); failed {failed}, 429s {server.refused}, early retries "
                f"{server.early_retries}"
            )
    finally:
        redis.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        base_url, redis_url, namespace, rpm, n = sys.argv[2:7]
        asyncio.run(child(base_url, redis_url, namespace, float(rpm), int(n)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rpm", type=float, default=600.0, help="R, requests a minute")
    parser.add_argument("--prompts", type=int, default=150)
    options = parser.parse_args()
    asyncio.run(one_process(options.rpm, options.prompts))
    three_processes(options.rpm, options.prompts)


if __name__ == "__main__":
    main()
