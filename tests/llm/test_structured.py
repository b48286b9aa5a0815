"""Structured output on the offline, scripted and fake providers (real server: test_llama.py)."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from llmgine import CommandFailedError
from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, OpenAIProvider, PromptCommand, ScriptedProvider
from llmgine.llm.providers.offline import instance_from_schema
from llmgine.testing import FakeOpenAIServer


class City(BaseModel):
    name: str
    country: str


class Trip(BaseModel):
    city: City
    days: int = Field(ge=1)
    mode: Literal["train", "plane"]
    stops: list[City]
    note: str | None = None


async def test_chat_returns_a_validated_instance(bus: MessageBus) -> None:
    engine = LLMEngine(bus, provider=ScriptedProvider(['{"name": "Paris", "country": "France"}']))
    city = await engine.chat("Capital of France?", output_type=City)
    assert city == City(name="Paris", country="France")


async def test_the_command_result_is_the_instance_and_the_log_holds_json(
    bus: MessageBus, read_log: object
) -> None:
    reply = '```json\n{"name": "Rome", "country": "Italy"}\n```'  # fences are tolerated
    LLMEngine(bus, provider=ScriptedProvider([reply]))
    result = await bus.execute(PromptCommand(prompt="Capital of Italy?", output_type=City))
    await bus.wait_for_events()
    assert result.result == City(name="Rome", country="Italy")
    assert bus.log_path is not None
    lines = [json.loads(line) for line in bus.log_path.read_text().splitlines()]
    command = next(line for line in lines if line["type"] == "PromptCommand")
    assert command["data"]["output_type"] == f"{City.__module__}.City"
    done = next(line for line in lines if line["type"] == "CommandResultEvent")
    assert done["data"]["command_result"]["result"] == {"name": "Rome", "country": "Italy"}


async def test_an_invalid_answer_goes_back_with_the_error_then_succeeds(bus: MessageBus) -> None:
    provider = ScriptedProvider(['{"name": "Paris"}', '{"name": "Paris", "country": "France"}'])
    engine = LLMEngine(bus, provider=provider)
    assert await engine.chat("Capital of France?", output_type=City) == City(
        name="Paris", country="France"
    )
    retry = provider.requests[1].messages
    assert retry[-2].content == '{"name": "Paris"}'
    assert "country: Field required" in (retry[-1].content or "")
    # The conversation keeps the prompt and the valid answer, not the correction.
    history = engine.conversations.get("default").messages
    assert [m.content for m in history] == [
        "Capital of France?",
        '{"name": "Paris", "country": "France"}',
    ]


async def test_retries_are_bounded_then_the_prompt_fails_clearly(bus: MessageBus) -> None:
    provider = ScriptedProvider(["not json", "still not", "nope"])
    engine = LLMEngine(bus, provider=provider, max_output_retries=1)
    with pytest.raises(CommandFailedError) as caught:
        await engine.chat("Capital of France?", output_type=City)
    result = caught.value.result
    assert result.error_type == "StructuredOutputError"  # type: ignore[attr-defined]
    assert "not a valid City after 2 attempts" in str(caught.value)
    assert len(provider.requests) == 2
    assert engine.conversations.get("default").messages == []


async def test_native_mode_sends_the_schema_and_prompted_mode_asks_for_json(
    bus: MessageBus,
) -> None:
    with FakeOpenAIServer() as server:
        server.add_text('{"name": "Oslo", "country": "Norway"}')
        server.add_text('{"name": "Bern", "country": "Switzerland"}')
        native = OpenAIProvider("m", base_url=server.base_url, max_retries=0)
        engine = LLMEngine(bus, provider=native, system_prompt="Be brief.")
        assert (await engine.chat("Norway?", output_type=City)).name == "Oslo"
        engine.provider = OpenAIProvider(
            "m", base_url=server.base_url, max_retries=0, structured_output="prompt"
        )
        assert (await engine.chat("Swiss?", output_type=City)).name == "Bern"
    first, second = server.requests
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["name"] == "City"
    assert first["response_format"]["json_schema"]["schema"]["required"] == ["name", "country"]
    assert first["messages"][0] == {"role": "system", "content": "Be brief."}
    assert "response_format" not in second
    system = second["messages"][0]["content"]
    assert system.startswith("Be brief.\n\nAnswer with only a JSON object")
    assert '"country"' in system


@pytest.mark.parametrize("stream", [False, True])
async def test_the_offline_model_returns_a_deterministic_valid_instance(
    bus: MessageBus, stream: bool
) -> None:
    engine = LLMEngine(bus, model="offline")
    trip = await engine.chat(
        "Plan a trip: days 3 by train", output_type=Trip, stream=stream, conversation_id="a"
    )
    again = await engine.chat(
        "Plan a trip: days 3 by train", output_type=Trip, stream=stream, conversation_id="b"
    )
    assert isinstance(trip, Trip)
    assert trip == again
    assert (trip.days, trip.mode) == (3, "train")
    city = await engine.chat("The city name: Lyon", output_type=City)
    assert city.name == "Lyon"


def test_instance_from_schema_fills_every_kind() -> None:
    value = instance_from_schema(Trip.model_json_schema())
    assert Trip.model_validate(value)


async def test_tools_then_structured_output(bus: MessageBus) -> None:
    from llmgine.llm import ToolResultEvent

    def get_capital(country: str) -> str:
        """The capital of a country.

        Args:
            country: The country.
        """
        return {"France": "Paris"}.get(country, "unknown")

    engine = LLMEngine(bus, model="offline", tools=[get_capital])
    results: list[ToolResultEvent] = []
    bus.register_event_handler(ToolResultEvent, results.append)
    city = await engine.chat("Use get_capital for country France", output_type=City)
    await bus.wait_for_events()
    assert isinstance(city, City)
    assert [r.result for r in results] == ["Paris"]


async def test_a_server_without_json_schema_mode_gets_json_object_then_the_prompt(
    bus: MessageBus,
) -> None:
    rejected = "1 validation error: response_format.type: Input should be 'text' or 'json_object'"
    with FakeOpenAIServer() as server:
        server.add_error(500, rejected)
        server.add_text('{"name": "Oslo", "country": "Norway"}')
        provider = OpenAIProvider("m", base_url=server.base_url, max_retries=0)
        engine = LLMEngine(bus, provider=provider)
        assert (await engine.chat("Norway?", output_type=City)).name == "Oslo"
        assert provider.structured_output == "json_object"  # kept for the next prompts
        server.add_error(400, "unknown field response_format")
        server.add_text('{"name": "Bern", "country": "Switzerland"}')
        assert (await engine.chat("Swiss?", output_type=City, stream=True)).name == "Bern"
        assert provider.structured_output == "prompt"
        server.add_text('{"name": "Rome", "country": "Italy"}')
        assert (await engine.chat("Italy?", output_type=City)).name == "Rome"
    formats = [r.get("response_format", {}).get("type") for r in server.requests]
    assert formats == ["json_schema", "json_object", "json_object", None, None]
    assert server.requests[1]["response_format"]["schema"]["title"] == "City"
    for prompted in server.requests[3:]:
        assert prompted["messages"][0]["content"].startswith("Answer with only a JSON object")


async def test_each_output_retry_sends_every_invalid_answer_so_far_so_no_two_requests_repeat(
    bus: MessageBus,
) -> None:
    provider = ScriptedProvider(
        ["Sorry, no JSON."] * 3 + ['{"name": "Paris", "country": "France"}']
    )
    engine = LLMEngine(bus, provider=provider, max_output_retries=3)
    assert await engine.chat("A city?", output_type=City) == City(name="Paris", country="France")
    requests = [[m.content for m in r.messages if m.role != "system"] for r in provider.requests]
    assert len(requests) == 4 and len({tuple(r) for r in requests}) == 4
    third = requests[3]  # the prompt, then each invalid answer and its error in turn
    assert third[0] == "A city?" and third[1::2] == ["Sorry, no JSON."] * 3
    assert all("not a valid City" in (text or "") for text in third[2::2])
