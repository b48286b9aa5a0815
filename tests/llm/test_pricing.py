"""What each call costs: ``usage.cost_usd`` from ``prices=`` or genai-prices' bundled data.

Free local models cost exactly 0.0; an unknown price is ``None`` with one warning per
model and engine, never 0. The cost reaches the response event, the span (llmgine's,
Phoenix's and Langfuse's attribute names) and the exported OpenTelemetry span.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage as PricedUsage
from genai_prices import calc_price

from llmgine.bus import MessageBus
from llmgine.errors import ConfigurationError
from llmgine.llm import (
    Completion,
    LLMEngine,
    LLMResponseEvent,
    OpenAIProvider,
    PromptCommand,
    ScriptedProvider,
    Usage,
)
from llmgine.llm.pipeline.instrumentation import COST_ATTRIBUTES
from llmgine.llm.pricing import FREE_PROVIDERS, Price, Prices
from llmgine.local_server import LlamaServer
from llmgine.testing import FakeOpenAIServer

USAGE = Usage(input_tokens=1_000, output_tokens=200, cached_input_tokens=400)


@pytest.fixture
def responses(bus: MessageBus) -> list[LLMResponseEvent]:
    seen: list[LLMResponseEvent] = []
    bus.register_event_handler(LLMResponseEvent, seen.append)
    return seen


@pytest.fixture
async def fake_server() -> AsyncIterator[FakeOpenAIServer]:
    with FakeOpenAIServer(model="fake-gpt-2026-01-01", cached_tokens=3) as server:
        yield server


Providers = Callable[..., OpenAIProvider]


@pytest.fixture
async def openai_at() -> AsyncIterator[Providers]:
    """OpenAI providers on a loopback server; their connections are closed after the test."""
    made: list[OpenAIProvider] = []

    def make(model: str, base_url: str) -> OpenAIProvider:
        made.append(OpenAIProvider(model, base_url=base_url, api_key="sk-test", max_retries=0))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


def price_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "llmgine.llm.pricing" and r.levelno == logging.WARNING
    ]


def test_a_price_counts_input_cached_input_and_output_tokens_at_their_rates() -> None:
    price = Price(input_per_mtok=2.0, output_per_mtok=10.0, cached_input_per_mtok=0.5)
    # 600 uncached input tokens at $2, 400 cached at $0.50, 200 output at $10 per million.
    assert price.cost(USAGE) == pytest.approx((600 * 2.0 + 400 * 0.5 + 200 * 10.0) / 1e6)
    no_cache_rate = Price(input_per_mtok=2.0, output_per_mtok=10.0)
    assert no_cache_rate.cost(USAGE) == pytest.approx((1_000 * 2.0 + 200 * 10.0) / 1e6)


def test_a_bundled_price_matches_genai_prices_with_cached_tokens_and_fetches_nothing() -> None:
    threads = {t.name for t in threading.enumerate()}
    cost = Prices().cost("openai", "gpt-4o-mini", USAGE, endpoint="api.openai.com")
    expected = calc_price(
        PricedUsage(input_tokens=1_000, cache_read_tokens=400, output_tokens=200),
        model_ref="gpt-4o-mini",
        provider_id="openai",
    ).total_price
    assert cost == pytest.approx(float(expected))
    uncached = Prices().cost(
        "openai", "gpt-4o-mini", USAGE.model_copy(update={"cached_input_tokens": 0}),
        endpoint="api.openai.com",
    )  # fmt: skip
    assert uncached is not None and cost is not None and cost < uncached
    assert {t.name for t in threading.enumerate()} == threads  # no price updater was started


def test_a_bundled_price_is_found_by_the_model_the_server_answered() -> None:
    prices = Prices()
    dated = prices.cost(
        "openai", "my-deployment", USAGE, answered="gpt-4o-mini-2024-07-18",
        endpoint="api.openai.com",
    )  # fmt: skip
    assert dated == prices.cost("openai", "gpt-4o-mini", USAGE, endpoint="api.openai.com")


def test_an_openai_compatible_host_is_priced_as_the_provider_it_is() -> None:
    groq = Prices().cost("openai", "llama-3.3-70b-versatile", USAGE, endpoint="api.groq.com")
    assert groq is not None and groq > 0


@pytest.mark.parametrize("provider", sorted(FREE_PROVIDERS))
def test_models_on_this_machine_or_replayed_cost_exactly_zero(provider: str) -> None:
    assert Prices().cost(provider, "anything", USAGE) == 0.0


def test_an_override_wins_by_answered_name_engine_name_or_model_string() -> None:
    price = Price(input_per_mtok=1.0, output_per_mtok=1.0)
    expected = price.cost(USAGE)
    for name in ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", "openai:gpt-4o-mini"):
        prices = Prices({name: price})
        cost = prices.cost(
            "openai", "gpt-4o-mini", USAGE, answered="gpt-4o-mini-2024-07-18",
            endpoint="api.openai.com",
        )  # fmt: skip
        assert cost == pytest.approx(expected)
    assert Prices({"offline": price}).cost("offline", "offline", USAGE) == pytest.approx(expected)


def test_an_override_that_is_not_a_price_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"prices\['m'\] is not a price"):
        Prices({"m": {"input_per_mtok": -1, "output_per_mtok": 1}})
    assert Prices({"m": {"input_per_mtok": 1, "output_per_mtok": 2}}).overrides["m"] == Price(
        input_per_mtok=1, output_per_mtok=2
    )


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (
            {"input_per_mtok": -1, "output_per_mtok": 0},
            "input_per_mtok: must be a finite number >= 0",
        ),
        ({"input_per_mtok": math.nan, "output_per_mtok": 0}, "input_per_mtok: must be a finite"),
        ({"input_per_mtok": 1, "output_per_mtok": math.inf}, "output_per_mtok: must be a finite"),
        ({"input_per_mtok": True, "output_per_mtok": 1}, "input_per_mtok: must be a finite"),
        ({"input_per_mtok": 1, "output_per_mtok": 1, "cached_input_per_mtok": -2}, "cached_input"),
        ({"input_per_mtok": 1}, "output_per_mtok: missing"),
    ],
)
def test_a_price_that_is_not_a_finite_number_at_least_0_is_a_configuration_error(
    arguments: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(problem)) as raised:
        Price(**arguments)
    assert "Write Price(input_per_mtok=0.15, output_per_mtok=0.60)" in str(raised.value)
    assert Price(input_per_mtok=0.15, output_per_mtok=0.60).cost(USAGE) > 0  # as the README


def test_an_unknown_price_is_none_with_one_warning_per_model_and_engine(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "llmgine.llm.pricing")
    prices = Prices()
    for _ in range(3):
        assert prices.cost("openai", "smollm2", USAGE, endpoint="127.0.0.1:8080") is None
    assert prices.cost("openai", "other", USAGE, endpoint="127.0.0.1:8080") is None
    assert prices.cost("my-provider", "m", USAGE) is None
    warnings = price_warnings(caplog)
    assert len(warnings) == 3
    assert "'smollm2' at 127.0.0.1:8080" in warnings[0]
    assert "prices={'smollm2': Price(" in warnings[0]
    Prices().cost("openai", "smollm2", USAGE, endpoint="127.0.0.1:8080")
    assert len(price_warnings(caplog)) == 4  # a new engine (its own Prices) says it again


async def test_the_offline_model_costs_zero_on_the_event_and_the_span(
    bus: MessageBus, responses: list[LLMResponseEvent], read_log: Any
) -> None:
    engine = LLMEngine(bus, model="offline")
    await engine.chat("hello")
    await bus.wait_for_events()
    (response,) = responses
    assert response.cost_usd == 0.0
    assert response.usage.cost_usd == 0.0
    (span,) = llm_span_ends(read_log(bus.log_path))
    assert {name: span["attributes"][name] for name in COST_ATTRIBUTES} == dict.fromkeys(
        COST_ATTRIBUTES, 0.0
    )


def llm_span_ends(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        line["data"]
        for line in lines
        if line["type"] == "TraceEvent"
        and line["data"].get("span_kind") == "LLM"
        and line["data"].get("end_time")
    ]


async def test_cached_prompt_tokens_from_the_server_are_priced_at_the_cached_rate(
    bus: MessageBus,
    responses: list[LLMResponseEvent],
    fake_server: FakeOpenAIServer,
    openai_at: Providers,
    read_log: Any,
) -> None:
    price = Price(input_per_mtok=3.0, output_per_mtok=15.0, cached_input_per_mtok=0.3)
    engine = LLMEngine(
        bus, provider=openai_at("fake-gpt", fake_server.base_url), prices={"fake-gpt": price}
    )
    await engine.chat("tell me about the weather in Paris")
    await bus.execute(PromptCommand(prompt="and in Rome today?", stream=True))
    await bus.wait_for_events()
    assert len(responses) == 2
    for response in responses:
        usage = response.usage
        assert usage.cached_input_tokens == 3
        assert not usage.estimated
        expected = ((usage.input_tokens - 3) * 3.0 + 3 * 0.3 + usage.output_tokens * 15.0) / 1e6
        assert response.cost_usd == pytest.approx(expected)
        assert response.model == "fake-gpt-2026-01-01"
    spans = llm_span_ends(read_log(bus.log_path))
    assert [s["attributes"]["gen_ai.usage.cache_read.input_tokens"] for s in spans] == [3, 3]
    assert [s["attributes"]["llm.cost.total"] for s in spans] == [r.cost_usd for r in responses]


async def test_a_server_of_your_own_costs_none_until_priced(
    bus: MessageBus,
    responses: list[LLMResponseEvent],
    fake_server: FakeOpenAIServer,
    openai_at: Providers,
    caplog: pytest.LogCaptureFixture,
    read_log: Any,
) -> None:
    caplog.set_level(logging.WARNING, "llmgine.llm.pricing")
    engine = LLMEngine(bus, provider=openai_at("gpt-4o-mini", fake_server.base_url))
    await engine.chat("hi")
    await engine.chat("hi again")
    await bus.wait_for_events()
    assert [r.cost_usd for r in responses] == [None, None]
    assert len(price_warnings(caplog)) == 1  # one per model and engine, not per call
    for span in llm_span_ends(read_log(bus.log_path)):
        assert not set(COST_ATTRIBUTES) & set(span["attributes"])


@pytest.mark.timeout(120)
async def test_a_call_to_the_real_llama_server_is_priced_through_prices(
    bus: MessageBus,
    responses: list[LLMResponseEvent],
    llama_server: LlamaServer,
    openai_at: Providers,
) -> None:
    price = Price(input_per_mtok=0.25, output_per_mtok=1.25)
    engine = LLMEngine(
        bus,
        provider=openai_at(llama_server.model, llama_server.base_url),
        prices={llama_server.model: price},
        options={"max_tokens": 8},
    )
    await engine.chat("Say hello.")
    await bus.wait_for_events()
    (response,) = responses
    assert not response.usage.estimated  # llama.cpp reports its token counts
    assert response.usage.input_tokens > 0
    assert response.cost_usd == pytest.approx(
        (response.usage.input_tokens * 0.25 + response.usage.output_tokens * 1.25) / 1e6
    )
    assert response.cost_usd is not None and response.cost_usd > 0


async def test_a_streamed_answer_is_priced_on_its_final_chunk(
    bus: MessageBus, responses: list[LLMResponseEvent]
) -> None:
    reply = Completion(content="four words of text", usage=Usage(input_tokens=10, output_tokens=4))
    provider = ScriptedProvider([reply], model="m")
    LLMEngine(bus, provider=provider, prices={"m": Price(input_per_mtok=1, output_per_mtok=2)})
    result = await bus.execute(PromptCommand(prompt="go", stream=True))
    assert result.success, result.error
    await bus.wait_for_events()
    assert [r.cost_usd for r in responses] == [pytest.approx((10 + 8) / 1e6)]


async def test_the_exported_opentelemetry_span_carries_the_cost_for_phoenix_and_langfuse(
    tmp_path: Path,
) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from llmgine.observability.otlp import OTLPExporter

    memory = InMemorySpanExporter()
    bus = MessageBus(
        log_dir=tmp_path,
        log_filename="run.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
        sinks=[OTLPExporter("http://127.0.0.1:1", span_exporter=memory)],
    )
    reply = Completion(content="ok", usage=Usage(input_tokens=100, output_tokens=50))
    engine = LLMEngine(
        bus,
        provider=ScriptedProvider([reply], model="m"),
        prices={"m": Price(input_per_mtok=2, output_per_mtok=4)},
    )
    async with bus:
        await engine.chat("hi")
    (llm,) = [
        s
        for s in memory.get_finished_spans()
        if (s.attributes or {}).get("openinference.span.kind") == "LLM"
    ]
    attributes = dict(llm.attributes or {})
    expected = (100 * 2 + 50 * 4) / 1e6
    assert attributes["llm.cost.total"] == pytest.approx(expected)  # Phoenix (OpenInference)
    assert attributes["gen_ai.usage.cost"] == pytest.approx(expected)  # Langfuse
    assert attributes["llmgine.cost_usd"] == pytest.approx(expected)
