"""A budget over the shared bus: every process of the namespace spends from one counter.

The engines here cost $0.20 a call against $0.50 (``budget_app``): calls start at
$0, $0.20 and $0.40, and the next is refused, however the calls are spread over
processes. Alone, each worker would allow three calls of its own.
"""

from __future__ import annotations

import asyncio

import budget_app
import pytest
from conftest import StartWorker

from llmgine.bus import MessageBus
from llmgine.llm import Budget, Completion, LLMEngine, Price, PromptCommand, ScriptedProvider, Usage

pytestmark = pytest.mark.timeout(180)


def prompt(n: int) -> PromptCommand:
    return PromptCommand(prompt="go", conversation_id=f"c{n}")


async def spent(client: object, namespace: str, scope: str) -> dict[str, float]:
    values = await client.hgetall(f"{namespace}:spend:{scope}")  # type: ignore[attr-defined]
    return {k.decode(): float(v) for k, v in values.items()}


async def test_two_worker_processes_spend_from_one_budget(
    caller: MessageBus, start_worker: StartWorker, client: object, namespace: str
) -> None:
    first = start_worker("budget_app:setup")
    for n in range(2):
        result = await caller.execute(prompt(n), timeout=60)
        assert result.success, result.error
    assert await spent(client, namespace, "engine") == {
        "usd": pytest.approx(0.4),
        "tokens": 400,
        "calls": 2,
    }
    second = start_worker("budget_app:setup")
    assert await asyncio.to_thread(first.terminate) == 0  # from here on, the second one answers
    third = await caller.execute(prompt(2), timeout=60)
    assert third.success, third.error
    refused = await caller.execute(prompt(3), timeout=60)
    assert not refused.success
    assert refused.error_type == "BudgetExceededError"
    assert "The budget of $0.5 per engine is spent for this namespace: $0.6 and 600 tokens" in str(
        refused.error
    )
    assert (await spent(client, namespace, "engine"))["calls"] == 3
    assert await asyncio.to_thread(second.terminate) == 0


def scripted_engine(bus: MessageBus, budget: Budget) -> tuple[LLMEngine, ScriptedProvider]:
    answers = [
        Completion(content="ok", usage=Usage(input_tokens=100, output_tokens=100))
        for _ in range(10)
    ]
    provider = ScriptedProvider(answers)
    engine = LLMEngine(
        bus,
        provider=provider,
        prices={"scripted": Price(input_per_mtok=1_000, output_per_mtok=1_000)},
        budget=budget,
    )
    return engine, provider


async def test_a_conversation_budget_keeps_a_counter_per_conversation_in_redis(
    caller: MessageBus, client: object, namespace: str
) -> None:
    _, provider = scripted_engine(caller, Budget(usd=0.3, per="conversation"))
    for _ in range(2):
        assert (await caller.execute(PromptCommand(prompt="a", conversation_id="a"))).success
    refused = await caller.execute(PromptCommand(prompt="a", conversation_id="a"))
    assert refused.error_type == "BudgetExceededError"
    assert (await caller.execute(PromptCommand(prompt="b", conversation_id="b"))).success
    assert (await spent(client, namespace, "conversation:a"))["usd"] == pytest.approx(0.4)
    assert (await spent(client, namespace, "conversation:b"))["calls"] == 1
    ttl = await client.ttl(f"{namespace}:spend:conversation:a")  # type: ignore[attr-defined]
    assert 0 < ttl <= 30 * 24 * 3600  # a conversation's counter does not stay forever
    assert len(provider.requests) == 3


async def test_a_command_budget_counter_in_redis_expires_after_a_day(
    caller: MessageBus, client: object, namespace: str
) -> None:
    scripted_engine(caller, Budget(tokens=100, per="command"))
    command = PromptCommand(prompt="c")
    assert (await caller.execute(command)).success
    assert (await spent(client, namespace, f"command:{command.id}"))["tokens"] == 200
    ttl = await client.ttl(f"{namespace}:spend:command:{command.id}")  # type: ignore[attr-defined]
    assert 0 < ttl <= 24 * 3600


async def test_a_budget_already_spent_in_redis_refuses_a_new_engine_at_once(
    caller: MessageBus, client: object, namespace: str
) -> None:
    await client.hset(f"{namespace}:spend:engine", mapping={"usd": 0.5, "tokens": 0})  # type: ignore[attr-defined]
    _, provider = scripted_engine(caller, budget_app.BUDGET)
    refused = await caller.execute(PromptCommand(prompt="go"))
    assert refused.error_type == "BudgetExceededError"
    assert provider.requests == []
