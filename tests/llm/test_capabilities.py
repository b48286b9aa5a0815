"""Providers report capabilities; the engine alone falls back to JSON asked in the prompt."""

from __future__ import annotations

import ast
import inspect
from typing import Any

from pydantic import BaseModel

import llmgine.llm.providers.openai as openai_provider
from llmgine.bus import MessageBus
from llmgine.errors import ProviderError
from llmgine.llm import LLMEngine, LLMResponseEvent, PromptCommand
from llmgine.llm.providers.base import Capabilities, Provider
from llmgine.llm.types import Completion, LLMRequest
from llmgine.observability.events import TraceEvent


class City(BaseModel):
    name: str
    population: int


ANSWER = '{"name": "Lyon", "population": 520000}'


class JsonServer(Provider):
    """A fake server: it may have a JSON-schema mode, and may find out it has none."""

    name = "fake"

    def __init__(self, *, json_schema: bool, rejects_schema: bool = False) -> None:
        super().__init__("fake-1")
        self.json_schema = json_schema
        self.rejects_schema = rejects_schema
        self.requests: list[LLMRequest] = []

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(json_schema=self.json_schema)

    async def complete(self, request: LLMRequest) -> Completion:
        self.requests.append(request)
        if self.rejects_schema and self.json_schema and request.output_schema is not None:
            self.json_schema = False  # what it found out, for every later call
            raise ProviderError("fake: this server takes no response_format")
        return Completion(content=ANSWER)


def instructed(request: LLMRequest) -> bool:
    """Whether the request asks for JSON in its system message."""
    first = request.messages[0]
    return first.role == "system" and "JSON schema" in (first.content or "")


def collect(bus: MessageBus) -> list[Any]:
    seen: list[Any] = []
    bus.register_event_handler(LLMResponseEvent, seen.append)
    bus.register_event_handler(TraceEvent, seen.append)
    return seen


async def test_a_provider_with_a_json_schema_mode_gets_the_schema_and_no_instruction(
    bus: MessageBus,
) -> None:
    server = JsonServer(json_schema=True)
    city = await LLMEngine(bus, provider=server).chat("A city?", output_type=City)
    assert city == City(name="Lyon", population=520000)
    [request] = server.requests
    assert request.output_schema is not None
    assert not instructed(request)


async def test_a_provider_without_one_gets_the_schema_in_the_prompt(bus: MessageBus) -> None:
    server = JsonServer(json_schema=False)
    await LLMEngine(bus, provider=server).chat("A city?", output_type=City)
    [request] = server.requests
    assert instructed(request)
    assert "population" in (request.messages[0].content or "")


async def test_a_server_found_to_lack_json_mode_is_asked_again_in_the_prompt_in_one_call(
    bus: MessageBus,
) -> None:
    seen = collect(bus)
    server = JsonServer(json_schema=True, rejects_schema=True)
    engine = LLMEngine(bus, provider=server)
    assert await engine.chat("A city?", output_type=City) == City(name="Lyon", population=520000)
    assert [instructed(r) for r in server.requests] == [False, True]
    await engine.chat("Another?", output_type=City)  # later prompts are prompted at once
    assert [instructed(r) for r in server.requests] == [False, True, True]
    await bus.wait_for_events()
    responses = [e for e in seen if isinstance(e, LLMResponseEvent)]
    ends = [e for e in seen if isinstance(e, TraceEvent) and e.span_kind == "LLM" and e.end_time]
    assert len(responses) == len(ends) == 2  # the rejected try is inside the call's one span
    assert all(e.status == "OK" for e in ends)


async def test_a_failure_of_a_server_that_keeps_its_json_mode_is_not_sent_again(
    bus: MessageBus,
) -> None:
    class Failing(JsonServer):
        async def complete(self, request: LLMRequest) -> Completion:
            self.requests.append(request)
            raise ProviderError("fake: down")

    server = Failing(json_schema=True)
    LLMEngine(bus, provider=server)
    failed = await bus.execute(PromptCommand(prompt="A city?", output_type=City))
    assert not failed.success
    assert "fake: down" in (failed.error or "")
    assert len(server.requests) == 1


async def test_a_provider_written_for_native_structured_output_keeps_working(
    bus: MessageBus,
) -> None:
    class Older(JsonServer):
        @property
        def capabilities(self) -> Capabilities:
            return Provider.capabilities.fget(self)  # type: ignore[attr-defined,no-any-return]

        @property
        def native_structured_output(self) -> bool:
            return True

    server = Older(json_schema=False)
    assert server.capabilities.json_schema
    await LLMEngine(bus, provider=server).chat("A city?", output_type=City)
    assert not instructed(server.requests[0])


def test_the_openai_provider_leaves_prompted_json_to_the_engine() -> None:
    tree = ast.parse(inspect.getsource(openai_provider))
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    assert "llmgine.llm.structured" not in imported
    assert not any(name.startswith("_UseThe") for name in vars(openai_provider))
