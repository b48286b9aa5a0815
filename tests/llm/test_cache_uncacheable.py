"""Providers whose answer is not a function of the request (scripted, replay) are never cached."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, PromptCommand, ScriptedProvider
from llmgine.llm.cache import LLMCache
from llmgine.llm.pipeline import Cached
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.replay import ReplayProvider
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.types import ChatMessage, LLMRequest

pytestmark = pytest.mark.timeout(60)

REQUEST = LLMRequest(model="scripted", messages=[ChatMessage(role="user", content="Yes or no?")])


def test_scripted_and_replay_say_they_are_not_cacheable_and_other_providers_are() -> None:
    assert Provider.cacheable is True
    assert ScriptedProvider.cacheable is False
    assert ReplayProvider.cacheable is False


async def test_the_same_prompt_twice_gets_the_scripts_next_reply_not_a_cached_one(
    bus: MessageBus, tmp_path: Path
) -> None:
    cache = LLMCache(tmp_path / "calls.sqlite3")
    engine = LLMEngine(bus, provider=ScriptedProvider(["yes", "WRONG"]), cache=cache)
    answers = []
    for _ in range(2):
        command = PromptCommand(prompt="Yes or no?", conversation_id=uuid.uuid4().hex)
        answers.append((await bus.execute(command)).result)
    assert answers == ["yes", "WRONG"]
    assert (await cache.astats()).entries == 0
    await engine.aclose()
    await cache.aclose()


async def test_the_cache_step_neither_looks_up_nor_keeps_a_scripted_answer_even_when_wrapped(
    tmp_path: Path,
) -> None:
    cache = LLMCache(tmp_path / "calls.sqlite3")
    step = Cached(WrapperProvider(ScriptedProvider(["one", "two", "three"])), cache)
    first = await step.complete(REQUEST)
    second = await step.complete(REQUEST)
    chunks = [c async for c in step.stream(REQUEST)]
    assert (first.content, second.content) == ("one", "two")
    assert not second.cached
    final = chunks[-1].completion
    assert final is not None and final.content == "three" and not final.cached
    stats = await cache.astats()
    assert (stats.hits, stats.entries) == (0, 0)
    await cache.aclose()
