"""The call pipeline: WrapperProvider forwards everything, the chain's order, instrumentation."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from llmgine.bus import MessageBus
from llmgine.llm import LLMDeltaEvent, LLMResponseEvent, PromptCommand
from llmgine.llm.pipeline import Instrumented, build_pipeline
from llmgine.llm.providers.base import Capabilities, Provider
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.types import ChatMessage, Completion, LLMRequest, StreamChunk, Usage
from llmgine.observability.events import TraceEvent


class Recording(Provider):
    """A real provider that answers "ok" and remembers what it was asked."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__("rec-1")
        self.calls: list[str] = []
        self.closed = 0

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(json_schema=True, stream_usage=True)

    @property
    def model_string(self) -> str:
        return "recording:rec-1"

    async def aclose(self) -> None:
        self.closed += 1

    async def complete(self, request: LLMRequest) -> Completion:
        self.calls.append(f"complete {request.model}")
        return Completion(content="ok", usage=Usage(input_tokens=3, output_tokens=1), model="m")

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        self.calls.append(f"stream {request.model}")
        yield StreamChunk(delta="o")
        yield StreamChunk(delta="k")
        yield StreamChunk(completion=Completion(content="ok", model="m"))


def request() -> LLMRequest:
    return LLMRequest(model="rec-1", messages=[ChatMessage(role="user", content="hi")])


def steps(provider: Provider) -> list[type[Provider]]:
    """The chain's steps, outermost first, down to the real provider."""
    found: list[type[Provider]] = [type(provider)]
    while isinstance(provider, WrapperProvider):
        provider = provider.inner
        found.append(type(provider))
    return found


async def test_a_wrapper_forwards_calls_closing_and_what_the_provider_reports() -> None:
    inner = Recording()
    wrapper = WrapperProvider(inner)
    assert (await wrapper.complete(request())).content == "ok"
    assert [c.delta async for c in wrapper.stream(request())] == ["o", "k", ""]
    await wrapper.aclose()
    assert inner.calls == ["complete rec-1", "stream rec-1"]
    assert inner.closed == 1
    assert wrapper.name == "recording"
    assert wrapper.model_string == "recording:rec-1"
    assert wrapper.capabilities == Capabilities(json_schema=True, stream_usage=True)
    assert wrapper.native_structured_output
    wrapper.model = "rec-2"
    assert (wrapper.model, inner.model) == ("rec-2", "rec-2")
    assert repr(wrapper) == "WrapperProvider(Recording(model='rec-2'))"


async def test_wrappers_stack_and_a_subclass_overrides_only_what_it_changes() -> None:
    class Shouting(WrapperProvider):
        async def complete(self, request: LLMRequest) -> Completion:
            completion = await self.inner.complete(request)
            return completion.model_copy(update={"content": (completion.content or "").upper()})

    inner = Recording()
    chain = Shouting(WrapperProvider(inner))
    assert (await chain.complete(request())).content == "OK"
    assert [c.delta async for c in chain.stream(request())] == ["o", "k", ""]  # forwarded as is
    assert steps(chain) == [Shouting, WrapperProvider, Recording]


async def test_the_pipeline_has_instrumentation_outermost_and_the_real_provider_innermost(
    bus: MessageBus,
) -> None:
    inner = Recording()
    chain = build_pipeline(inner, bus=bus, command=PromptCommand(prompt="hi"))
    found = steps(chain)
    assert found[0] is Instrumented
    assert found[-1] is Recording
    assert "instrumentation" in (build_pipeline.__doc__ or "")


async def test_an_instrumented_call_is_one_llm_span_and_one_response_event(
    bus: MessageBus,
) -> None:
    seen: list[Any] = []
    bus.register_event_handler(LLMResponseEvent, seen.append)
    bus.register_event_handler(TraceEvent, seen.append)
    prompt_id = uuid.uuid4()
    chain = Instrumented(Recording(), bus=bus, conversation_id="c1", prompt_id=prompt_id)
    completion = await chain.complete(request())
    await bus.wait_for_events()
    assert completion.content == "ok"
    responses = [e for e in seen if isinstance(e, LLMResponseEvent)]
    assert [(r.conversation_id, r.prompt_id, r.model, r.provider) for r in responses] == [
        ("c1", prompt_id, "m", "recording")
    ]
    llm = [e for e in seen if isinstance(e, TraceEvent) and e.span_kind == "LLM"]
    ends = [e for e in llm if e.end_time is not None]
    assert len(ends) == 1
    assert len({e.span_context.span_id for e in llm}) == 1
    assert ends[0].attributes["gen_ai.usage.input_tokens"] == 3


async def test_an_instrumented_stream_publishes_each_delta_then_the_response(
    bus: MessageBus,
) -> None:
    deltas: list[LLMDeltaEvent] = []
    responses: list[LLMResponseEvent] = []
    bus.register_event_handler(LLMDeltaEvent, deltas.append)
    bus.register_event_handler(LLMResponseEvent, responses.append)
    chain = Instrumented(Recording(), bus=bus, conversation_id="c1", prompt_id=uuid.uuid4())
    chunks = [chunk async for chunk in chain.stream(request())]
    await bus.wait_for_events()
    assert [c.delta for c in chunks] == ["o", "k", ""]
    assert chunks[-1].completion is not None
    assert [d.delta for d in deltas] == ["o", "k"]
    assert [r.content for r in responses] == ["ok"]
