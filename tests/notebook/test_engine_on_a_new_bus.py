"""``%llmgine start`` replaces the default bus: the default engine keeps what it was given."""

from __future__ import annotations

from IPython.core.interactiveshell import InteractiveShell

from llmgine import LLMEngine
from llmgine.llm import Budget, RateLimits, Retries
from llmgine.notebook import get_bus, get_runtime, run_sync, set_engine


def test_a_new_bus_keeps_the_engines_settings_budget_spend_and_conversations(
    shell: InteractiveShell,
) -> None:
    shell.run_line_magic("llmgine", "start --quiet")
    budget = Budget(tokens=1_000_000)
    engine = set_engine(
        LLMEngine(
            get_bus(),
            model="offline",
            system_prompt="Be brief.",
            timeout=7.0,
            max_history=40,
            max_context_tokens=5_000,
            budget=budget,
            retries=Retries(attempts=2),
            limits=RateLimits(concurrency=3),
        )
    )
    run_sync(engine.chat("Hello there", conversation_id="c"))
    spent = engine.spend.tokens
    assert spent > 0

    shell.run_line_magic("llmgine", "start --log-file second.jsonl --quiet")
    moved = get_runtime().get_engine()
    assert moved is not engine and moved.bus is get_bus()
    assert moved.conversations.system_prompt == "Be brief."
    assert (moved.timeout, moved.max_context_tokens) == (7.0, 5_000)
    assert moved.conversations.max_messages == 40
    assert moved.resilience.retries == Retries(attempts=2)
    assert moved.resilience.limits == RateLimits(concurrency=3)
    keeper = moved.policies.budget
    assert keeper is not None and keeper.budget == budget  # not silently unlimited
    assert moved.spend.tokens == spent  # what it spent counts against the budget still
    run_sync(moved.chat("And again", conversation_id="c"))
    assert len(moved.conversations.get("c").messages) == 4  # the conversation went on
    assert moved.spend.tokens > spent
