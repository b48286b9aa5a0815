"""A prompt's result says what its calls cost and whether the cache answered them all."""

from __future__ import annotations

from typing import Any

from llmgine.bus import MessageBus
from llmgine.llm import Completion, PromptCommand, ScriptedProvider, ToolCall, Usage
from llmgine.llm.conversations import Conversation
from llmgine.llm.run import PromptRun
from llmgine.llm.tool_runner import ToolRunner


def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


def answer(text: str | None, cost: float | None, cached: bool = False, **fields: Any) -> Completion:
    return Completion(content=text, usage=Usage(cost_usd=cost), cached=cached, **fields)


async def run(bus: MessageBus, *replies: Completion) -> dict[str, Any]:
    """The metadata of one prompt whose calls answer ``replies`` (no pipeline: as given)."""
    prompt = PromptRun(
        PromptCommand(prompt="add 1 and 2"),
        ScriptedProvider(replies),
        Conversation("c"),
        ToolRunner(bus, [add]),
        options={},
        max_tool_rounds=2,
        max_output_retries=0,
        timeout=None,
        sink=None,
    )
    result = await prompt.result()
    assert result.success, result.error
    return result.metadata


def call(cost: float | None, cached: bool = False) -> Completion:
    tool_call = ToolCall(id="c1", name="add", arguments='{"a": 1, "b": 2}')
    return answer(None, cost, cached, tool_calls=[tool_call], finish_reason="tool_calls")


async def test_cost_is_the_sum_of_the_calls_costs(bus: MessageBus) -> None:
    metadata = await run(bus, call(0.25), answer("3", 0.5))
    assert (metadata["cost_usd"], metadata["cached"]) == (0.75, False)


async def test_one_call_of_unknown_price_makes_the_cost_unknown(bus: MessageBus) -> None:
    metadata = await run(bus, call(0.25), answer("3", None))
    assert metadata["cost_usd"] is None


async def test_cached_only_when_every_call_was_a_cache_hit(bus: MessageBus) -> None:
    assert (await run(bus, call(0.0, cached=True), answer("3", 0.0, cached=True)))["cached"]
    assert not (await run(bus, call(0.0, cached=True), answer("3", 0.1)))["cached"]
