"""LLMEngine overhead per chat turn with the offline provider, against calling it directly.

Baseline: ``await OfflineProvider().complete(request)`` with the same one-message request.
Measured: ``await bus.execute(PromptCommand(...))`` through an ``LLMEngine`` on a bus with the
JSONL log on (console off), history bounded to one turn so every request is the same size.
Each turn logs the command, its span, the LLM call's span, the response, metrics and the result.

Second row, on a real server: llama.cpp (llama-cpp-python's server, SmolLM2-135M, one thread)
on 127.0.0.1. Baseline: the bare ``openai`` SDK's ``AsyncOpenAI.chat.completions.create``.
Measured: the same request as a ``PromptCommand`` through an ``LLMEngine`` with the ``openai``
provider on that server, JSONL log on. Same prompt, ``max_tokens``, seed and temperature 0;
the two alternate in blocks so drift hits both; each side's median per prompt is compared.

    python benchmarks/engine.py [--turns 5000] [--rounds 5] [--real-prompts 40] [--real-rounds 5]
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


REAL_PROMPT = "Say hello in three words."


async def real_server_rows(base_url: str, model: str, prompts: int, rounds: int) -> None:
    from openai import AsyncOpenAI

    from llmgine.llm import OpenAIProvider

    client = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0)
    messages = [{"role": "user", "content": REAL_PROMPT}]
    with tempfile.TemporaryDirectory() as tmp:
        bus = MessageBus(
            log_dir=tmp,
            log_filename="real.jsonl",
            enable_console_metrics=False,
            enable_console_traces=False,
        )
        provider = OpenAIProvider(model, base_url=base_url, max_retries=0)
        engine = LLMEngine(bus, provider=provider)
        sdk_times: list[float] = []
        engine_times: list[float] = []
        async with bus:
            for round_ in range(rounds + 1):  # round 0 warms both paths up, unmeasured
                sdk_round, engine_round = [], []
                for i in range(prompts):
                    start = time.perf_counter()
                    await client.chat.completions.create(
                        model=model,
                        messages=messages,  # type: ignore[arg-type]
                        max_tokens=8,
                        temperature=0.0,
                        seed=7,
                    )
                    sdk_round.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    result = await bus.execute(
                        PromptCommand(
                            prompt=REAL_PROMPT,
                            conversation_id=f"r{round_}-{i}",  # one-message requests, as the SDK
                            max_tokens=8,
                            temperature=0.0,
                            options={"seed": 7},
                        )
                    )
                    engine_round.append(time.perf_counter() - start)
                    assert result.success, result.error
                if round_ == 0:
                    continue
                sdk_times += sdk_round
                engine_times += engine_round
                sdk_ms = statistics.median(sdk_round) * 1000
                engine_ms = statistics.median(engine_round) * 1000
                print(
                    f"round {round_}: bare SDK {sdk_ms:.2f} ms/prompt  llmgine {engine_ms:.2f} "
                    f"ms/prompt  ({engine_ms - sdk_ms:+.2f} ms)"
                )
            await bus.wait_for_events()
        await engine.aclose()
        await client.close()
    sdk_ms = statistics.median(sdk_times) * 1000
    engine_ms = statistics.median(engine_times) * 1000
    print()
    print(f"real llama.cpp server, bare openai SDK: {sdk_ms:.2f} ms per prompt (median)")
    print(f"real llama.cpp server, llmgine LLMEngine: {engine_ms:.2f} ms per prompt (median)")
    print(
        f"llmgine overhead per prompt on the real server: {engine_ms - sdk_ms:+.2f} ms "
        f"({(engine_ms / sdk_ms - 1) * 100:+.1f} %)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--real-prompts", type=int, default=40, help="per round; 0 skips")
    parser.add_argument("--real-rounds", type=int, default=5)
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
    if args.real_prompts > 0:
        from llmgine.local_server import LlamaServer

        print()
        with LlamaServer() as server:
            asyncio.run(
                real_server_rows(server.base_url, server.model, args.real_prompts, args.real_rounds)
            )


if __name__ == "__main__":
    main()
