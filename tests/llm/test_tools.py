"""Tools: schemas from signatures and docstrings, validation, sync tools off the loop."""

from __future__ import annotations

import asyncio
import enum
import threading
from typing import Literal

import pytest

from llmgine import ToolError
from llmgine.llm import Tool, ToolRegistry, tool


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


def get_weather(
    city: str, unit: Unit = Unit.CELSIUS, days: int = 1, mode: Literal["fast", "full"] = "fast"
) -> str:
    """Get the weather forecast.

    Uses a very reliable source.

    Args:
        city: The city to look up.
        unit: The temperature unit.
        days: How many days ahead.
        mode: How thorough to be.
    """
    return f"{city}:{unit.value}:{days}:{mode}"


def test_schema_comes_from_the_signature_and_docstring() -> None:
    definition = Tool(get_weather).definition()
    function = definition["function"]
    assert definition["type"] == "function"
    assert function["name"] == "get_weather"
    assert function["description"] == "Get the weather forecast.\n\nUses a very reliable source."
    params = function["parameters"]
    assert params["required"] == ["city"]
    assert params["properties"]["city"] == {"type": "string", "description": "The city to look up."}
    assert params["properties"]["days"]["type"] == "integer"
    assert params["properties"]["days"]["default"] == 1
    assert params["properties"]["mode"]["enum"] == ["fast", "full"]
    unit_ref = params["properties"]["unit"]["$ref"].rsplit("/", 1)[-1]
    assert params["$defs"][unit_ref]["enum"] == ["celsius", "fahrenheit"]


def test_optional_parameters_are_not_required() -> None:
    def search(query: str, limit: int | None = None) -> list[str]:
        return []

    params = Tool(search).parameters
    assert params["required"] == ["query"]
    assert "limit" in params["properties"]


async def test_arguments_are_validated_and_coerced_before_the_call() -> None:
    result = await Tool(get_weather).run('{"city": "Paris", "unit": "fahrenheit", "days": "3"}')
    assert result == "Paris:fahrenheit:3:fast"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ('{"city": ', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("{}", "city: Field required"),
        ('{"city": "x", "days": "many"}', "days: Input should be a valid integer"),
        ('{"city": "x", "mode": "slow"}', "mode: Input should be 'fast' or 'full'"),
        ('{"city": "x", "colour": "red"}', "colour: Extra inputs are not permitted"),
    ],
)
async def test_bad_arguments_raise_a_tool_error_saying_what_is_wrong(
    arguments: str, message: str
) -> None:
    with pytest.raises(ToolError, match=message):
        await Tool(get_weather).run(arguments)


async def test_sync_tools_run_in_a_worker_thread() -> None:
    threads: list[str] = []

    def which_thread() -> str:
        threads.append(threading.current_thread().name)
        return "ok"

    assert await Tool(which_thread).run("{}") == "ok"
    assert len(threads) == 1
    assert threads[0] != threading.main_thread().name


async def test_async_tools_are_awaited() -> None:
    async def slow_double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert await Tool(slow_double).run({"x": 21}) == 42


def test_decorator_and_registry() -> None:
    @tool(name="add_numbers", description="Add two numbers.")
    def add(a: int, b: int) -> int:
        return a + b

    assert add(1, 2) == 3  # still a plain function
    registry = ToolRegistry([add, get_weather])
    assert [t.name for t in registry] == ["add_numbers", "get_weather"]
    assert registry.definitions()[0]["function"]["description"] == "Add two numbers."
    assert "add_numbers" in registry
    assert len(registry) == 2
    assert registry.unregister("add_numbers") is True
    assert registry.get("add_numbers") is None


def test_star_args_cannot_be_tools() -> None:
    def anything(*args: int) -> None:
        return None

    with pytest.raises(TypeError, match=r"\*args"):
        Tool(anything)
