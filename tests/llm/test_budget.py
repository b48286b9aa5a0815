"""Budgets: a call that would start once its budget is spent fails unsent; engine.spend counts.

Each scripted reply here reports 100 input and 100 output tokens, and ``scripted`` is
priced at $1,000 per million tokens both ways, so every call costs exactly $0.20.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest

from llmgine.bus import MessageBus
from llmgine.errors import BudgetExceededError, ConfigurationError
from llmgine.llm import (
    Completion,
    LLMEngine,
    OpenAIProvider,
    PromptCommand,
    ScriptedProvider,
    Usage,
)
from llmgine.llm.budget import Budget, BudgetKeeper
from llmgine.llm.pipeline.budgeted import Budgeted
from llmgine.llm.pricing import Price
from llmgine.llm.types import ChatMessage, LLMRequest
from llmgine.testing import FakeOpenAIServer

PRICES = {"scripted": Price(input_per_mtok=1_000, output_per_mtok=1_000)}
CALL_USD = 0.2


def reply(text: str = "ok") -> Completion:
    return Completion(content=text, usage=Usage(input_tokens=100, output_tokens=100))


def scripted(n: int = 10) -> ScriptedProvider:
    return ScriptedProvider([reply(f"answer {i}") for i in range(n)])


def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({}, "give a limit"),
        ({"usd": 0}, "usd: Input should be greater than 0"),
        ({"tokens": -5}, "tokens: Input should be greater than 0"),
        ({"usd": 1, "per": "day"}, "per: Input should be"),
        ({"usd": True}, "usd: give a number, not True"),
        ({"tokens": True}, "tokens: give a number, not True"),
        ({"usd": float("nan")}, "usd: Input should be a finite number"),
        ({"usd": float("inf")}, "usd: Input should be a finite number"),
    ],
)
def test_a_budget_needs_a_positive_limit_and_a_known_scope(
    arguments: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem) as raised:
        Budget(**arguments)
    assert "Budget(usd=0.50)" in str(raised.value)


def test_a_budget_says_what_it_limits() -> None:
    assert str(Budget(usd=0.5)) == "$0.5 per engine"
    assert str(Budget(usd=2, tokens=10_000, per="conversation")) == (
        "$2 and 10,000 tokens per conversation"
    )


async def test_an_engine_budget_refuses_the_call_after_it_is_spent_and_sends_nothing(
    bus: MessageBus,
) -> None:
    provider = scripted()
    engine = LLMEngine(bus, provider=provider, prices=PRICES, budget=Budget(usd=0.5))
    for _ in range(3):  # calls start at $0, $0.20 and $0.40: under the budget
        assert (await bus.execute(PromptCommand(prompt="go"))).success
    result = await bus.execute(PromptCommand(prompt="go", conversation_id="other"))
    assert not result.success
    assert result.error_type == "BudgetExceededError"
    assert result.error == (
        "The budget of $0.5 per engine is spent for this engine: $0.6 and 600 tokens so far; "
        "the call was not sent. To go on, raise it (LLMEngine(budget=Budget(...)))."
    )
    assert len(provider.requests) == 3
    assert engine.spend.usd == pytest.approx(3 * CALL_USD)
    assert engine.spend.calls == 3


async def test_a_refused_call_never_reaches_the_server(bus: MessageBus) -> None:
    with FakeOpenAIServer() as server:
        provider = OpenAIProvider("fake-gpt", base_url=server.base_url, api_key="k", max_retries=0)
        LLMEngine(bus, provider=provider, budget=Budget(tokens=1))
        first = await bus.execute(PromptCommand(prompt="one two three"))
        second = await bus.execute(PromptCommand(prompt="four", stream=True))
        await provider.aclose()
        assert first.success, first.error
        assert not second.success
        assert second.error_type == "BudgetExceededError"
        assert "1 tokens per engine" in str(second.error)
        assert len(server.requests) == 1


async def test_a_conversation_budget_stops_that_conversation_only(bus: MessageBus) -> None:
    engine = LLMEngine(
        bus,
        provider=scripted(),
        prices=PRICES,
        budget=Budget(usd=0.3, per="conversation"),
    )
    assert (await bus.execute(PromptCommand(prompt="a", conversation_id="a"))).success
    assert (await bus.execute(PromptCommand(prompt="a", conversation_id="a"))).success
    refused = await bus.execute(PromptCommand(prompt="a", conversation_id="a"))
    assert not refused.success
    assert "for conversation 'a': $0.4 and 400 tokens" in str(refused.error)
    assert "start a new conversation" in str(refused.error)
    assert (await bus.execute(PromptCommand(prompt="b", conversation_id="b"))).success
    assert engine.spend.by_conversation()["a"]["cost_usd"] == pytest.approx(0.4)
    assert engine.spend.by_conversation()["b"]["calls"] == 1


async def test_a_command_budget_stops_a_prompt_mid_tool_rounds_and_not_the_next(
    bus: MessageBus,
) -> None:
    provider = ScriptedProvider(
        [
            ScriptedProvider.call("add", a=1, b=2).model_copy(
                update={"usage": Usage(input_tokens=100, output_tokens=100)}
            ),
            reply("never asked"),
        ]
    )
    engine = LLMEngine(
        bus, provider=provider, tools=[add], budget=Budget(tokens=150, per="command")
    )
    refused = await bus.execute(PromptCommand(prompt="add 1 and 2"))
    assert not refused.success
    assert refused.error_type == "BudgetExceededError"
    assert "for this prompt: $0 and 200 tokens" in str(refused.error)
    assert len(provider.requests) == 1  # the tool ran; the second call was not sent
    assert (await bus.execute(PromptCommand(prompt="a new prompt"))).success
    assert engine.spend.tokens == 400


class Unpriced(ScriptedProvider):
    """A provider genai-prices does not know: its calls' price is unknown."""

    name = "my-provider"
    cacheable = True  # stands in for a real model, whose answers the cache keeps


async def test_a_token_budget_counts_the_tokens_of_calls_of_unknown_price(
    bus: MessageBus,
) -> None:
    provider = Unpriced([reply() for _ in range(6)], model="unpriced")
    engine = LLMEngine(bus, provider=provider, budget=Budget(tokens=1_000))
    for _ in range(5):
        assert (await bus.execute(PromptCommand(prompt="go"))).success
    refused = await bus.execute(PromptCommand(prompt="go"))
    assert "1,000 tokens per engine is spent for this engine: $0 and 1,000 tokens" in str(
        refused.error
    )
    assert len(provider.requests) == 5
    assert engine.spend.to_dict()["unpriced_calls"] == 5


@pytest.mark.parametrize("budget", [Budget(usd=1.0), Budget(usd=1.0, tokens=1_000)])
async def test_a_dollar_budget_refuses_a_model_of_unknown_price_before_sending(
    bus: MessageBus, budget: Budget
) -> None:
    # Fail closed: a budget that cannot count a call's dollars must not let it through.
    provider = Unpriced([reply() for _ in range(3)], model="unpriced")
    engine = LLMEngine(bus, provider=provider, budget=budget)
    for _ in range(2):
        refused = await bus.execute(PromptCommand(prompt="go"))
        assert not refused.success and refused.error_type == "ConfigurationError"
        error = str(refused.error)
        assert "cannot count my-provider model 'unpriced'" in error
        assert "the call was not sent" in error
        assert "prices={'unpriced': Price(" in error and "Budget(tokens=...)" in error
    assert provider.requests == []
    assert engine.spend.calls == 0


async def test_a_dollar_budget_refusal_says_to_price_the_asked_name_and_warns_of_no_spent_call(
    bus: MessageBus, caplog: pytest.LogCaptureFixture
) -> None:
    # Priced only by the name the server answers with: known after a call, not before.
    provider = Unpriced([reply()], model="acme-large")
    LLMEngine(
        bus,
        provider=provider,
        budget=Budget(usd=1.0),
        prices={"acme-large-2025-01": Price(input_per_mtok=1.0, output_per_mtok=2.0)},
    )
    with caplog.at_level(logging.WARNING, logger="llmgine"):
        refused = await bus.execute(PromptCommand(prompt="go"))
    assert refused.error_type == "ConfigurationError" and provider.requests == []
    assert "Price it under the name it is asked by: LLMEngine(prices={'acme-large'" in str(
        refused.error
    )
    assert not [r for r in caplog.records if "No price is known" in r.getMessage()]


async def test_a_dollar_budget_answers_hits_of_a_model_of_unknown_price_and_refuses_streams(
    bus: MessageBus, tmp_path: Path
) -> None:
    from llmgine import LLMCache

    path = tmp_path / "calls.sqlite3"
    async with MessageBus(log_dir=None, enable_console_traces=False) as filler:
        LLMEngine(filler, provider=Unpriced([reply("stored")], model="unpriced"), cache=path)
        assert (await filler.execute(PromptCommand(prompt="the same"))).success
    provider = Unpriced([reply()], model="unpriced")
    LLMEngine(bus, provider=provider, cache=LLMCache(path), budget=Budget(usd=1.0))
    hit = await bus.execute(PromptCommand(prompt="the same"))
    assert hit.success and hit.result == "stored"  # a hit sends nothing: nothing to count
    for stream in (False, True):
        refused = await bus.execute(PromptCommand(prompt="new", stream=stream))
        assert refused.error_type == "ConfigurationError"
        assert "cannot count my-provider model 'unpriced'" in str(refused.error)
    assert provider.requests == []


async def test_a_dollar_budget_sends_a_model_priced_with_prices(bus: MessageBus) -> None:
    provider = Unpriced([reply()], model="unpriced")
    prices = {"unpriced": Price(input_per_mtok=1, output_per_mtok=1)}
    engine = LLMEngine(bus, provider=provider, prices=prices, budget=Budget(usd=1.0))
    assert (await bus.execute(PromptCommand(prompt="go"))).success
    assert engine.spend.usd == pytest.approx(0.0002)


async def test_an_unknown_cost_is_none_in_spend_never_0(bus: MessageBus) -> None:
    provider = Unpriced([reply() for _ in range(2)], model="unpriced")
    engine = LLMEngine(bus, provider=provider)
    await bus.execute(PromptCommand(prompt="a", conversation_id="a"))
    await bus.execute(PromptCommand(prompt="b", conversation_id="b"))
    spend = engine.spend
    assert spend.usd is None and spend.to_dict()["usd"] is None
    assert spend.by_model()["unpriced"]["cost_usd"] is None
    assert spend.by_model()["unpriced"]["unpriced_calls"] == 2
    assert spend.by_conversation()["a"]["cost_usd"] is None
    assert spend.frame()["cost_usd"].isna().all()
    assert repr(spend) == "Spend(price unknown, 400 tokens, 2 calls)"


async def test_spend_keeps_the_known_cost_and_counts_the_unpriced_calls(
    bus: MessageBus,
) -> None:
    keeper = BudgetKeeper(None, bus)
    known = reply().model_copy(update={"usage": Usage(cost_usd=0.25)})
    await keeper.add(PromptCommand(prompt="go", conversation_id="a"), "priced", known)
    await keeper.add(PromptCommand(prompt="go", conversation_id="a"), "unpriced", reply())
    hit = reply().model_copy(update={"cached": True, "usage": Usage(cost_usd=0.0)})
    await keeper.add(PromptCommand(prompt="go", conversation_id="b"), "unpriced", hit)
    spend = keeper.spend
    assert spend.usd == pytest.approx(0.25)
    assert spend.to_dict()["unpriced_calls"] == 1
    by_conversation = spend.by_conversation()
    assert by_conversation["a"]["cost_usd"] == pytest.approx(0.25)
    assert by_conversation["a"]["unpriced_calls"] == 1
    assert by_conversation["b"]["cost_usd"] == 0.0  # a hit spent nothing: known
    assert spend.by_model()["unpriced"]["cost_usd"] is None  # the call it sent: unknown
    frame = spend.frame().set_index(["model", "conversation_id"])
    assert frame.loc[("priced", "a"), "cost_usd"] == pytest.approx(0.25)
    assert math.isnan(frame.loc[("unpriced", "a"), "cost_usd"])
    assert frame.loc[("unpriced", "b"), "cost_usd"] == 0.0
    assert math.isnan(frame.loc[("unpriced", "b"), "saved_usd"])  # its saving: unknown
    assert by_conversation["b"]["saved_usd"] is None
    assert by_conversation["b"]["unpriced_cached_calls"] == 1
    assert spend.to_dict()["saved_usd"] is None
    assert repr(spend) == "Spend($0.2500, 200 tokens, 3 calls, 1 unpriced)"


async def test_the_error_carries_the_budget_and_the_spend_and_is_a_runtime_error(
    bus: MessageBus,
) -> None:
    budget = Budget(usd=0.1, per="conversation")
    keeper = BudgetKeeper(budget, bus)
    command = PromptCommand(prompt="go", conversation_id="c7")
    await keeper.add(command, "m", reply().model_copy(update={"usage": Usage(cost_usd=0.25)}))
    with pytest.raises(RuntimeError) as raised:
        await keeper.check(command)
    error = raised.value
    assert isinstance(error, BudgetExceededError)
    assert (error.budget, error.scope, error.spent_usd, error.spent_tokens) == (
        budget,
        "conversation c7",
        0.25,
        0,
    )
    await keeper.check(PromptCommand(prompt="go", conversation_id="c8"))  # its own budget


class CacheHit(ScriptedProvider):
    """Answers as the call cache does on a hit: no cost, the cost it saved."""

    async def complete(self, request: LLMRequest) -> Completion:
        answer = await super().complete(request)
        usage = answer.usage.model_copy(update={"cost_usd": 0.0})
        return answer.model_copy(update={"cached": True, "cost_saved_usd": 0.2, "usage": usage})


async def test_a_cache_hit_spends_nothing_and_counts_as_a_saving(bus: MessageBus) -> None:
    keeper = BudgetKeeper(Budget(tokens=150), bus)
    command = PromptCommand(prompt="go")
    step = Budgeted(CacheHit([reply(), reply()]), keeper, command)
    request = LLMRequest(model="m", messages=[ChatMessage(role="user", content="go")])
    await step.complete(request)
    await step.complete(request)  # the budget is untouched: a hit spends nothing
    assert await keeper.spent(command) == (0.0, 0)
    assert keeper.spend.to_dict()["cached_calls"] == 2
    assert keeper.spend.to_dict()["saved_usd"] == pytest.approx(0.4)
    assert keeper.spend.tokens == 0


@pytest.fixture
def spent_engine(bus: MessageBus) -> LLMEngine:
    """Two answers of ``scripted``, then one that says another model answered."""
    answers = [reply(), reply(), reply().model_copy(update={"model": "other"})]
    return LLMEngine(bus, provider=ScriptedProvider(answers), prices=PRICES)


async def test_engine_spend_totals_by_model_and_conversation_as_dict_and_frame(
    bus: MessageBus, spent_engine: LLMEngine
) -> None:
    await bus.execute(PromptCommand(prompt="a", conversation_id="a"))
    await bus.execute(PromptCommand(prompt="a", conversation_id="a"))
    await bus.execute(PromptCommand(prompt="b", conversation_id="b"))
    spend = spent_engine.spend
    assert (spend.usd, spend.tokens, spend.calls) == (pytest.approx(0.6), 600, 3)
    summary = spend.to_dict()
    assert summary["by_model"]["scripted"]["calls"] == 2
    assert summary["by_model"]["other"]["cost_usd"] == pytest.approx(0.2)
    assert summary["by_conversation"]["a"]["tokens"] == 400
    frame = spend.frame()
    assert list(frame[["model", "conversation_id", "calls"]].itertuples(index=False)) == [
        ("scripted", "a", 2),
        ("other", "b", 1),
    ]
    assert frame["cost_usd"].sum() == pytest.approx(0.6)
    assert repr(spend) == "Spend($0.6000, 600 tokens, 3 calls)"
    spend.clear()
    assert spend.calls == 0 and spend.frame().empty


async def test_a_cache_hit_is_answered_once_the_budget_is_spent(
    bus: MessageBus, tmp_path: Path
) -> None:
    from llmgine import LLMCache

    LLMEngine(
        bus,
        model="offline",
        prices={"offline": Price(input_per_mtok=1e6, output_per_mtok=1e6)},  # $1 a token
        cache=LLMCache(tmp_path / "calls.sqlite3"),
        budget=Budget(usd=2),
    )
    first = await bus.execute(PromptCommand(prompt="the same", conversation_id="1"))
    assert first.success  # it began under the budget and spent past it
    hit = await bus.execute(PromptCommand(prompt="the same", conversation_id="2"))
    assert hit.success and hit.metadata["cached"] is True  # sends nothing: allowed
    refused = await bus.execute(PromptCommand(prompt="something new", conversation_id="3"))
    assert refused.error_type == BudgetExceededError.__name__
