"""``map`` with an ``output_type``: a row whose answer failed validation is sent again on a re-run.

Only answers that validate are kept in the call cache, so re-running a map after a
model's bad answers asks the model again for those rows (and only those).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from pydantic import BaseModel

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, OpenAIProvider, Price
from llmgine.testing import FakeOpenAIServer

pytestmark = pytest.mark.timeout(120)


class City(BaseModel):
    name: str
    country: str


def _engine(bus: MessageBus, server: FakeOpenAIServer, **settings: Any) -> LLMEngine:
    """An engine on the fake server's model, allowed one output retry."""
    provider = OpenAIProvider("fake-gpt", api_key="sk-test", base_url=server.base_url)
    return LLMEngine(bus, provider=provider, max_output_retries=1, **settings)


async def test_a_rerun_map_sends_again_only_the_rows_that_failed_validation(
    bus: MessageBus,
) -> None:
    frame = pd.DataFrame({"q": ["Paris"]})
    with FakeOpenAIServer() as server:
        engine = _engine(bus, server)
        server.add_text("no JSON here")
        server.add_text("still no JSON")
        first = await engine.map(frame, "City of {q}?", output_type=City, progress=False)
        assert str(first["error"].iloc[0]).startswith("StructuredOutputError")
        assert len(server.requests) == 2
        server.add_text('{"name": "Paris", "country": "France"}')
        second = await engine.map(frame, "City of {q}?", output_type=City, progress=False)
        assert second["error"].isna().all()
        assert second["name"].tolist() == ["Paris"]
        assert len(server.requests) == 3
        third = await engine.map(frame, "City of {q}?", output_type=City, progress=False)
        assert third["cached"].tolist() == [True] and len(server.requests) == 3
        await engine.aclose()


async def test_a_row_that_failed_validation_carries_the_tokens_and_cost_its_calls_spent(
    bus: MessageBus,
) -> None:
    frame = pd.DataFrame({"q": ["Paris"]})
    with FakeOpenAIServer() as server:
        prices = {"fake-gpt": Price(input_per_mtok=1000.0, output_per_mtok=1000.0)}
        engine = _engine(bus, server, prices=prices)
        server.add_text("no JSON here")
        server.add_text("still no JSON")
        result = await engine.map(frame, "City of {q}?", output_type=City, progress=False)
        assert str(result["error"].iloc[0]).startswith("StructuredOutputError")
        assert len(server.requests) == 2
        assert result["input_tokens"].iloc[0] > 0 and result["output_tokens"].iloc[0] > 0
        assert engine.spend.usd > 0
        assert result["cost_usd"].iloc[0] == pytest.approx(engine.spend.usd)
        await engine.aclose()
