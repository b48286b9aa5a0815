"""The outermost step of the call pipeline: one LLM span, one response event, metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from llmgine.bus.bus import MessageBus
from llmgine.errors import ProviderError
from llmgine.llm.events import LLMDeltaEvent, LLMResponseEvent
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.types import Completion, LLMRequest, StreamChunk
from llmgine.observability.events import Metric, MetricEvent
from llmgine.observability.spans import Span

__all__ = ["COST_ATTRIBUTES", "Instrumented"]

COST_ATTRIBUTES = ("llmgine.cost_usd", "llm.cost.total", "gen_ai.usage.cost")
"""The span attributes a call's cost in US dollars is written to: llmgine's own, the one
Phoenix reads (OpenInference ``llm.cost.total``) and the one Langfuse reads from
OpenTelemetry (``gen_ai.usage.cost``). Absent when the price is unknown."""


class Instrumented(WrapperProvider):
    """Records each call of ``inner`` as telemetry on ``bus``.

    Each call is an ``LLM`` span (OpenTelemetry GenAI attribute names), an
    ``LLMResponseEvent`` and token/latency metrics; a streamed call also publishes
    an ``LLMDeltaEvent`` per text delta. Being outermost, whatever the steps inside
    do (a cache hit, retries, a fallback) is one span and one event.

    Args:
        inner: The next step of the pipeline.
        bus: Where spans and events go.
        conversation_id: The conversation the call belongs to.
        prompt_id: The id of the ``PromptCommand`` being answered.
    """

    def __init__(
        self, inner: Provider, *, bus: MessageBus, conversation_id: str, prompt_id: UUID
    ) -> None:
        super().__init__(inner)
        self.bus = bus
        self.conversation_id = conversation_id
        self.prompt_id = prompt_id

    def _span(self, request: LLMRequest) -> Span:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": self.name,
            "gen_ai.request.model": self.model,
            "gen_ai.conversation.id": self.conversation_id,
        }
        if request.temperature is not None:
            attributes["gen_ai.request.temperature"] = request.temperature
        if request.max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = request.max_tokens
        if request.tool_choice is not None:
            attributes["llmgine.request.tool_choice"] = request.tool_choice
        if request.output_schema is not None:
            attributes["llmgine.request.output_type"] = request.output_schema.get("title", "")
        return self.bus.span(f"chat {self.model}", kind="LLM", **attributes)

    async def complete(self, request: LLMRequest) -> Completion:
        """Call the inner provider inside an ``LLM`` span, then publish the response."""
        async with self._span(request) as span:
            start = time.perf_counter()
            completion = await self.inner.complete(request)
            await self._record(span, completion, (time.perf_counter() - start) * 1000.0)
        return completion

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream from the inner provider inside an ``LLM`` span, publishing each delta."""
        async with self._span(request) as span:
            start = time.perf_counter()
            completion: Completion | None = None
            async for chunk in self.inner.stream(request):
                if chunk.delta:
                    await self.bus.publish(
                        LLMDeltaEvent(
                            conversation_id=self.conversation_id,
                            prompt_id=self.prompt_id,
                            delta=chunk.delta,
                        )
                    )
                    yield StreamChunk(delta=chunk.delta)
                if chunk.completion is not None:
                    completion = chunk.completion
            if completion is None:
                raise ProviderError(f"{self.name}: the stream ended without a final answer.")
            await self._record(span, completion, (time.perf_counter() - start) * 1000.0)
        yield StreamChunk(completion=completion)

    async def _record(self, span: Span, completion: Completion, latency_ms: float) -> None:
        model = completion.model or self.model
        usage = completion.usage
        span.set_attribute("gen_ai.response.model", model)
        span.set_attribute(
            "gen_ai.response.finish_reasons",
            [completion.finish_reason] if completion.finish_reason else [],
        )
        span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
        span.set_attribute("llmgine.usage.estimated", usage.estimated)
        if usage.cached_input_tokens:
            span.set_attribute("gen_ai.usage.cache_read.input_tokens", usage.cached_input_tokens)
            span.set_attribute(
                "llm.token_count.prompt_details.cache_read", usage.cached_input_tokens
            )
        if usage.cost_usd is not None:
            for name in COST_ATTRIBUTES:
                span.set_attribute(name, usage.cost_usd)
        span.set_attribute("llmgine.cache.hit", completion.cached)
        if completion.cost_saved_usd is not None:
            span.set_attribute("llmgine.cost_saved_usd", completion.cost_saved_usd)
        _set_resilience(span, completion)
        await self.bus.publish(
            LLMResponseEvent(
                conversation_id=self.conversation_id,
                prompt_id=self.prompt_id,
                content=completion.content,
                model=model,
                provider=self.name,
                finish_reason=completion.finish_reason,
                usage=usage,
                latency_ms=latency_ms,
                tool_calls=completion.tool_calls,
                tool_call_count=len(completion.tool_calls),
                cost_usd=usage.cost_usd,
                cached=completion.cached,
                cost_saved_usd=completion.cost_saved_usd,
                retries=completion.retries,
                retry_wait_ms=completion.retry_wait_ms,
                rate_limit_wait_ms=completion.rate_limit_wait_ms,
                fallback_from=completion.fallback_from,
            )
        )
        tags = {"provider": self.name, "model": model}
        if usage.estimated:
            tags["usage"] = "estimated"
        await self.bus.publish(
            MetricEvent(
                metrics=[
                    Metric(
                        name="gen_ai.usage.input_tokens",
                        value=usage.input_tokens,
                        unit="tokens",
                        tags=tags,
                    ),
                    Metric(
                        name="gen_ai.usage.output_tokens",
                        value=usage.output_tokens,
                        unit="tokens",
                        tags=tags,
                    ),
                    Metric(name="llm.latency_ms", value=latency_ms, unit="ms", tags=tags),
                ]
            )
        )


def _set_resilience(span: Span, completion: Completion) -> None:
    """What the retry, rate-limit and fallback steps said of the call, on its span."""
    if completion.retries:
        span.set_attribute("llmgine.retries", completion.retries)
        span.set_attribute("llmgine.retry_wait_ms", completion.retry_wait_ms)
    if completion.rate_limit_wait_ms:
        span.set_attribute("llmgine.rate_limit.wait_ms", completion.rate_limit_wait_ms)
    if completion.fallback_from:
        span.set_attribute("llmgine.fallback.from", completion.fallback_from)
