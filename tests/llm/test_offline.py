"""The offline provider: deterministic, tool-aware, helpful."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest

from llmgine.bus import MessageBus
from llmgine.llm import ChatMessage, LLMEngine, LLMRequest, OfflineProvider, Tool
from llmgine.llm.providers.offline import arguments_from_prompt


def get_weather(
    city: str, unit: Literal["celsius", "fahrenheit"] = "celsius", days: int = 1
) -> str:
    """Get the weather.

    Args:
        city: The city.
        unit: The unit.
        days: Days ahead.
    """
    return f"Sunny in {city}, {days} day(s), {unit}"


PARAMS = Tool(get_weather).parameters


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("What is the weather in Paris?", {"city": "Paris", "unit": "celsius", "days": 1}),
        (
            "get_weather city=Berlin unit: fahrenheit",
            {"city": "Berlin", "unit": "fahrenheit", "days": 1},
        ),
        (
            'weather for city "New York" over 3 days',
            {"city": "New York", "unit": "celsius", "days": 3},
        ),
        (
            "weather city Oslo days=2 in fahrenheit",
            {"city": "Oslo", "unit": "fahrenheit", "days": 2},
        ),
        ("weather", {"city": "", "unit": "celsius", "days": 1}),
    ],
)
def test_arguments_are_read_from_the_prompt(prompt: str, expected: dict[str, Any]) -> None:
    assert arguments_from_prompt(prompt, PARAMS, "get_weather") == expected


def test_numbers_fill_numeric_parameters_in_order() -> None:
    def add(a: float, b: float) -> float:
        return a + b

    assert arguments_from_prompt("please add 2.5 and 4", Tool(add).parameters) == {
        "a": 2.5,
        "b": 4.0,
    }


async def run_session(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    bus = MessageBus(
        log_dir=tmp_path,
        log_filename=f"{name}.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
    )
    engine = LLMEngine(bus, model="offline", tools=[get_weather])
    async with bus:
        await engine.chat("Hello! Who are you?")
        await engine.chat("What is the weather in Lisbon for 2 days?")
        await engine.chat("And the weather city Porto?", conversation_id="other")
    assert bus.log_path is not None
    lines = [json.loads(x) for x in bus.log_path.read_text().splitlines()]
    return [
        line["data"] for line in lines if line["type"] in ("LLMResponseEvent", "ToolResultEvent")
    ]


async def test_the_same_session_gives_the_same_transcript(tmp_path: Path) -> None:
    first = await run_session(tmp_path, "first")
    second = await run_session(tmp_path, "second")

    def stable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in r.items() if k not in ("prompt_id", "latency_ms", "duration_ms")}
            for r in rows
        ]

    assert stable(first) == stable(second)
    assert len(first) == 7  # 3 prompts, 2 of them with a tool round (response, result, response)
    assert first[2]["result"] == "Sunny in Lisbon, 2 day(s), celsius"


async def test_without_a_tool_it_says_what_it_is_and_how_to_switch() -> None:
    provider = OfflineProvider()
    completion = await provider.complete(
        LLMRequest(model="offline", messages=[ChatMessage(role="user", content="Summarize this")])
    )
    assert completion.content is not None
    assert "offline model" in completion.content
    assert "OPENAI_API_KEY" in completion.content
    assert "Summarize this" in completion.content
    assert completion.usage.input_tokens == 2
    assert completion.usage.output_tokens > 10
    assert completion.finish_reason == "stop"


async def test_it_streams_word_chunks_that_join_to_the_answer() -> None:
    provider = OfflineProvider()
    request = LLMRequest(model="offline", messages=[ChatMessage(role="user", content="hi")])
    chunks = [c async for c in provider.stream(request)]
    whole = chunks[-1].completion
    assert whole is not None
    assert len(chunks) > 10
    assert "".join(c.delta for c in chunks) == whole.content


async def test_one_token_is_singular() -> None:
    provider = OfflineProvider()
    one = await provider.complete(
        LLMRequest(model="offline", messages=[ChatMessage(role="user", content="Hi")])
    )
    assert '"Hi" (1 token).' in str(one.content)
