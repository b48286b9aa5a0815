"""Engine workers sharing one budget (python -m llmgine worker budget_app:setup).

Each answer reports 100 input and 100 output tokens and ``scripted`` is priced at
$1,000 per million tokens both ways: every call costs $0.20, against $0.50 per engine.
"""

from __future__ import annotations

from llmgine.bus import MessageBus
from llmgine.llm import Budget, Completion, LLMEngine, Price, ScriptedProvider, Usage

CALL_USD = 0.2
BUDGET = Budget(usd=0.5)


def setup(bus: MessageBus) -> None:
    """An engine with a budget per engine: over Redis, one budget for the namespace."""
    answers = [
        Completion(content=f"answer {i}", usage=Usage(input_tokens=100, output_tokens=100))
        for i in range(20)
    ]
    LLMEngine(
        bus,
        provider=ScriptedProvider(answers),
        prices={"scripted": Price(input_per_mtok=1_000, output_per_mtok=1_000)},
        budget=BUDGET,
    )
