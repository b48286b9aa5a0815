"""The call cache on a real OpenAI-compatible server (llama.cpp, SmolLM2): a hit sends nothing.

The requests are counted at the server: its access log has one line per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, LLMResponseEvent, OpenAIProvider, PromptCommand
from llmgine.local_server import LlamaServer

pytestmark = pytest.mark.timeout(180)

REQUEST_LINE = "POST /v1/chat/completions"


def served(server: LlamaServer) -> int:
    """Chat requests the server has answered so far (its access log's lines)."""
    return server.output(last=1 << 30).count(REQUEST_LINE)


@pytest.fixture
async def engine(
    bus: MessageBus, llama_server: LlamaServer, tmp_path: Path
) -> AsyncIterator[LLMEngine]:
    provider = OpenAIProvider(llama_server.model, base_url=llama_server.base_url, max_retries=0)
    engine = LLMEngine(bus, provider=provider, cache=tmp_path / "calls.sqlite3")
    yield engine
    await engine.aclose()


async def test_the_second_identical_prompt_is_the_first_answer_and_sends_no_request(
    bus: MessageBus, engine: LLMEngine, llama_server: LlamaServer
) -> None:
    seen: list[LLMResponseEvent] = []
    bus.register_event_handler(LLMResponseEvent, seen.append)
    fields = {"temperature": 0.0, "max_tokens": 12}
    before = served(llama_server)
    first = await bus.execute(PromptCommand(prompt="Name one colour.", **fields))
    assert first.success, first.error
    assert served(llama_server) == before + 1
    second = await bus.execute(
        PromptCommand(prompt="Name one colour.", conversation_id="another", **fields)
    )
    streamed = [
        d async for d in engine.stream("Name one colour.", conversation_id="third", **fields)
    ]
    await bus.wait_for_events()
    assert served(llama_server) == before + 1  # no request for the two hits
    assert second.result == first.result == "".join(streamed)
    assert [r.cached for r in seen] == [False, True, True]
    assert seen[1].usage.output_tokens == seen[0].usage.output_tokens > 0
    assert seen[1].cost_usd == 0.0
