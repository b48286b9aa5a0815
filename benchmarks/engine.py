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

Third row, a real model in-process (``model="local"``, SmolLM2-135M through llama-cpp-python, one
thread): tokens per second and time to first token of a streamed answer through
``LLMEngine.stream``, against ``Llama.create_chat_completion(stream=True)`` on the same loaded
model, alternating, same prompt, temperature 0.

    python benchmarks/engine.py [--turns 5000] [--rounds 5] [--real-prompts 40] [--real-rounds 5]
                                [--local-rounds 10]
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

    from llmgine.llm import OpenAIProvider, Price

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
        free = Price(input_per_mtok=0.0, output_per_mtok=0.0)  # a local server: no bill
        engine = LLMEngine(bus, provider=provider, prices={model: free})
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
                pairs = zip(engine_round, sdk_round, strict=True)
                paired_ms = statistics.median(e - b for e, b in pairs) * 1000
                print(
                    f"round {round_}: bare SDK {sdk_ms:.2f} ms/prompt  llmgine {engine_ms:.2f} "
                    f"ms/prompt  (paired difference {paired_ms:+.2f} ms)"
                )
            await bus.wait_for_events()
        await engine.aclose()
        await client.close()
    sdk_ms = statistics.median(sdk_times) * 1000
    engine_ms = statistics.median(engine_times) * 1000
    # Each llmgine prompt runs right after its SDK twin: the median of the paired differences
    # cancels the machine's drift, which the difference of the two medians does not.
    paired_ms = (
        statistics.median(e - b for e, b in zip(engine_times, sdk_times, strict=True)) * 1000
    )
    print()
    print(f"real llama.cpp server, bare openai SDK: {sdk_ms:.2f} ms per prompt (median)")
    print(f"real llama.cpp server, llmgine LLMEngine: {engine_ms:.2f} ms per prompt (median)")
    print(
        f"llmgine overhead per prompt on the real server (median of paired differences): "
        f"{paired_ms:+.2f} ms ({paired_ms / sdk_ms * 100:+.1f} % of the SDK's median)"
    )


LOCAL_PROMPT = "Write a short story about a lighthouse keeper."


async def local_rows(rounds: int, max_tokens: int = 96) -> None:
    from llmgine.llm.providers.local import LocalProvider

    provider = LocalProvider()
    loaded = await provider._load()
    llama = loaded.llama
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    engine = LLMEngine(bus, provider=provider)
    loop = asyncio.get_running_loop()

    def direct() -> tuple[float, float, int]:
        start = time.perf_counter()
        first = 0.0
        tokens = 0
        for chunk in llama.create_chat_completion(
            messages=[{"role": "user", "content": LOCAL_PROMPT}],
            max_tokens=max_tokens,
            temperature=0.0,
            stream=True,
        ):
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                tokens += 1
                first = first or time.perf_counter() - start
        return first, time.perf_counter() - start, tokens

    async def through_engine(i: int) -> tuple[float, float, int]:
        start = time.perf_counter()
        first = 0.0
        tokens = 0
        async for _ in engine.stream(
            LOCAL_PROMPT, max_tokens=max_tokens, temperature=0.0, conversation_id=f"l{i}"
        ):
            tokens += 1
            first = first or time.perf_counter() - start
        return first, time.perf_counter() - start, tokens

    direct_rates, engine_rates, direct_first, engine_first = [], [], [], []
    async with bus:
        for i in range(rounds + 1):  # round 0 warms up, unmeasured
            d_first, d_total, d_tokens = await loop.run_in_executor(loaded.executor, direct)
            e_first, e_total, e_tokens = await through_engine(i)
            if i == 0:
                continue
            direct_rates.append(d_tokens / d_total)
            engine_rates.append(e_tokens / e_total)
            direct_first.append(d_first * 1000)
            engine_first.append(e_first * 1000)
            print(
                f"round {i}: llama-cpp-python {d_tokens / d_total:.1f} tokens/s "
                f"(first {d_first * 1000:.1f} ms)  LLMEngine {e_tokens / e_total:.1f} tokens/s "
                f"(first {e_first * 1000:.1f} ms)  {e_tokens} tokens"
            )
    d_rate, e_rate = statistics.median(direct_rates), statistics.median(engine_rates)
    # Each round runs both back to back: the median of the per-round ratios cancels drift.
    ratio = statistics.median(e / d for e, d in zip(engine_rates, direct_rates, strict=True))
    print()
    print(
        f"local model, llama-cpp-python called directly: {d_rate:.1f} tokens/s, first token "
        f"{statistics.median(direct_first):.1f} ms (medians)"
    )
    print(
        f"local model through LLMEngine.stream: {e_rate:.1f} tokens/s, first token "
        f"{statistics.median(engine_first):.1f} ms (medians); median per-round ratio "
        f"{ratio:.2f}x the direct rate"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--real-prompts", type=int, default=40, help="per round; 0 skips")
    parser.add_argument("--real-rounds", type=int, default=5)
    parser.add_argument("--local-rounds", type=int, default=10, help="0 skips")
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
    if args.local_rounds > 0:
        print()
        asyncio.run(local_rows(args.local_rounds))


if __name__ == "__main__":
    main()
