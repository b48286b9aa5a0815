"""Overhead per call of the cost steps of the call pipeline, against the same chain without them.

Inner provider: an in-process one that answers at once with a fixed completion (100 input
tokens, 40 of them cached, 20 output), so what is timed is the steps, not a model.
Baseline: ``PromptedJSON(inner)`` (the bottom of the engine's chain). Measured, each in the
same run, alternating with the baseline in blocks so drift hits both:

- ``Priced`` with a bundled genai-prices price (``gpt-4o-mini`` on ``api.openai.com``);
- ``Priced`` with a ``prices=`` override;
- ``Priced`` for a free local model (``offline``: exactly 0.0);
- ``Budgeted`` with no budget (it counts every call into ``engine.spend``);
- ``Budgeted`` with a local dollar budget (a check before, a count after).

Prints the per-call overhead in microseconds of CPU time (target for ``Priced``: < 20 us).

    python benchmarks/cost.py [--calls 2000] [--blocks 40]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from llmgine.bus import MessageBus
from llmgine.llm import ChatMessage, Completion, LLMRequest, PromptCommand, Provider, Usage
from llmgine.llm.budget import Budget, BudgetKeeper
from llmgine.llm.pipeline import Budgeted, Priced, PromptedJSON
from llmgine.llm.pricing import Price, Prices

ANSWER = Completion(
    content="ok",
    finish_reason="stop",
    usage=Usage(input_tokens=100, cached_input_tokens=40, output_tokens=20),
)


class Instant(Provider):
    """Answers every request at once with the same completion."""

    name = "openai"

    def __init__(
        self, model: str, name: str, endpoint: str | None, answer: Completion = ANSWER
    ) -> None:
        super().__init__(model)
        self.name = name  # type: ignore[misc]
        self._endpoint = endpoint
        self._answer = answer

    @property
    def endpoint(self) -> str | None:
        return self._endpoint

    async def complete(self, request: LLMRequest) -> Completion:
        return self._answer.model_copy(update={"model": request.model})


async def per_call(chain: Provider, request: LLMRequest, calls: int) -> float:
    """CPU seconds per call of ``chain`` (this process's own: other processes' load is out)."""
    start = time.process_time()
    for _ in range(calls):
        await chain.complete(request)
    return (time.process_time() - start) / calls


async def overhead(
    make: Callable[[Provider], Provider], inner: Provider, calls: int, blocks: int
) -> tuple[float, float]:
    """Median microseconds per call of the baseline, and the overhead ``make`` adds to it.

    The two alternate in ``blocks`` blocks of ``calls`` calls each; each side's median
    block is compared.
    """
    request = LLMRequest(model=inner.model, messages=[ChatMessage(role="user", content="hi")])
    base = PromptedJSON(inner)
    measured = make(base)
    await per_call(measured, request, calls)  # warm: the first lookup loads the price data
    bases, totals = [], []
    for _ in range(blocks):
        bases.append(await per_call(base, request, calls))
        totals.append(await per_call(measured, request, calls))
    base_us = statistics.median(bases) * 1e6
    return base_us, statistics.median(totals) * 1e6 - base_us


async def main(calls: int, blocks: int) -> None:
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    command = PromptCommand(prompt="hi")
    bundled = Instant("gpt-4o-mini", "openai", "api.openai.com")
    overridden = Instant("my-model", "openai", "127.0.0.1:8080")
    free = Instant("offline", "offline", None)
    priced = ANSWER.model_copy(update={"usage": ANSWER.usage.model_copy(update={"cost_usd": 1e-5})})
    answered = Instant("gpt-4o-mini", "openai", "api.openai.com", priced)  # Priced ran below
    override = Prices({"my-model": Price(input_per_mtok=0.5, output_per_mtok=1.5)})
    rows: list[tuple[str, Provider, Callable[[Provider], Provider]]] = [
        ("Priced, bundled price", bundled, lambda p: Priced(p, Prices())),
        ("Priced, prices= override", overridden, lambda p: Priced(p, override)),
        ("Priced, free local model", free, lambda p: Priced(p, Prices())),
        (
            "Budgeted, no budget (counts)",
            answered,
            lambda p: Budgeted(p, BudgetKeeper(None, bus), command),
        ),
        (
            "Budgeted, usd budget (local)",
            answered,
            lambda p: Budgeted(p, BudgetKeeper(Budget(usd=1e9), bus), command),
        ),
    ]
    print(f"{blocks} alternating blocks of {calls} calls per row; CPU time, median block")
    print(f"{'step':34} {'baseline us/call':>17} {'overhead us/call':>17}")
    for label, inner, make in rows:
        base_us, extra_us = await overhead(make, inner, calls, blocks)
        print(f"{label:34} {base_us:17.2f} {extra_us:17.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--blocks", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.blocks))
