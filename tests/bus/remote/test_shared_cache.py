"""``cache="redis"``: an answer one process kept is a hit in every process of the namespace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import StartWorker
from counting_model import Counting, request
from support import quiet_bus

from llmgine.bus import MessageBus
from llmgine.bus.remote import RedisServer
from llmgine.errors import CacheError
from llmgine.llm import PromptCommand
from llmgine.llm.cache import LLMCache
from llmgine.llm.pipeline import Cached
from llmgine.testing import FakeOpenAIServer


@pytest.fixture
async def second(redis_server: RedisServer, namespace: str) -> AsyncIterator[MessageBus]:
    """Another bus on the caller's namespace, as another process would have."""
    bus = quiet_bus()
    await bus.connect(redis_server.url, namespace, heartbeat=0.2)
    yield bus
    await bus.stop()


@pytest.mark.timeout(60)
async def test_two_buses_on_one_namespace_share_hits_stats_and_clearing(
    caller: MessageBus, second: MessageBus, client: Any, namespace: str
) -> None:
    mine, theirs = LLMCache.shared(caller), LLMCache.shared(second)
    model_here, model_there = Counting(), Counting()
    here, there = Cached(model_here, mine), Cached(model_there, theirs)
    assert (await here.complete(request("hi"))).cached is False
    hit = await there.complete(request("hi"))
    assert (hit.cached, hit.content) == (True, "answer to hi")
    assert (model_here.calls, model_there.calls) == (1, 0)
    assert await client.hlen(f"{namespace}:cache:calls") == 1
    stats = await theirs.astats()
    assert (stats.hits, stats.misses, stats.entries, stats.path) == (1, 0, 1, None)
    assert stats.location == f"redis {namespace}:cache" and stats.size_bytes > 0
    with pytest.raises(CacheError, match=r"await cache\.astats"):
        theirs.stats()
    assert await mine.aclear() == 1
    assert (await there.complete(request("hi"))).cached is False
    assert model_there.calls == 1


@pytest.mark.timeout(180)
async def test_a_worker_answers_from_what_another_worker_kept(
    caller: MessageBus,
    start_worker: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
    client: Any,
    namespace: str,
) -> None:
    with FakeOpenAIServer() as server:
        server.add_text("Teal.")
        monkeypatch.setenv("CACHE_APP_BASE_URL", server.base_url)
        first = await asyncio.to_thread(start_worker, "cache_app:setup", max_concurrency=1)
        asked = await caller.execute(
            PromptCommand(prompt="A colour?", conversation_id="a"), timeout=60
        )
        assert asked.success, asked.error
        assert asked.result == "Teal." and len(server.requests) == 1
        other = await asyncio.to_thread(start_worker, "cache_app:setup", max_concurrency=1)
        assert await asyncio.to_thread(first.terminate) == 0  # the other is the only one left
        again = await caller.execute(
            PromptCommand(prompt="A colour?", conversation_id="b"), timeout=60
        )
        assert again.success, again.error
        assert again.result == "Teal." and len(server.requests) == 1  # a hit in another process
        assert await client.hlen(f"{namespace}:cache:calls") == 1
        assert await asyncio.to_thread(other.terminate) == 0


@pytest.mark.timeout(60)
async def test_a_map_on_another_bus_answers_from_the_shared_cache_in_one_read(
    caller: MessageBus, second: MessageBus, client: Any, namespace: str
) -> None:
    import pandas as pd

    from llmgine.llm import LLMEngine

    frame = pd.DataFrame({"review": [f"review {i}" for i in range(30)]})
    here = LLMEngine(caller, provider=Counting(), cache="redis")
    await here.map(frame.iloc[:20], "{review}", progress=False)
    assert await client.hlen(f"{namespace}:cache:calls") == 20

    model = Counting()
    there = LLMEngine(second, provider=model, cache="redis")
    result = await there.map(frame, "{review}", progress=False)
    assert model.calls == 10  # only the rows the other bus never answered
    assert result["cached"].tolist() == [True] * 20 + [False] * 10
    assert result["output"].tolist() == [f"answer to review {i}" for i in range(30)]
    assert there.policies.cache is not None and there.policies.cache.hits == 20
