"""max_context_tokens: the oldest whole turns leave the request, never the store; an event each."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmgine.bus import MessageBus
from llmgine.errors import ContextWindowError
from llmgine.llm import (
    ConversationTrimmedEvent,
    LLMEngine,
    OpenAIProvider,
    PromptCommand,
    ScriptedProvider,
)
from llmgine.llm.conversations import ContextWindow, token_counter
from llmgine.llm.conversations.trimming import estimate_tokens
from llmgine.llm.providers.base import count_tokens
from llmgine.llm.types import ChatMessage
from llmgine.local_server import LlamaServer

pytestmark = pytest.mark.timeout(120)

ReadLog = Callable[[Path | None], list[dict[str, Any]]]


def lookup(city: str) -> str:
    """Look a city up.

    Args:
        city: The city.
    """
    return f"{city} is a city with a very long description " + "and more words " * 20


def size(*texts: str) -> int:
    """The estimated size of messages with these texts (4 tokens of template each)."""
    return sum(4 + estimate_tokens(t) for t in texts)


async def test_the_oldest_turns_leave_the_request_and_stay_in_the_store(
    bus: MessageBus, read_log: ReadLog
) -> None:
    provider = ScriptedProvider(["first answer", "second answer", "third answer"])
    engine = LLMEngine(bus, provider=provider, system_prompt="Be brief.")
    await engine.chat("first question")
    await engine.chat("second question")
    window = size("Be brief.", "second question", "second answer", "third question")
    result = await bus.execute(PromptCommand(prompt="third question", max_context_tokens=window))
    assert result.success
    assert [m.content for m in provider.requests[2].messages] == [
        "Be brief.",
        "second question",
        "second answer",
        "third question",
    ]
    assert len(engine.conversations.get("default").messages) == 6  # the store keeps all
    await bus.wait_for_events()
    trims = [r for r in read_log(bus.log_path) if r["type"] == "ConversationTrimmedEvent"]
    assert len(trims) == 1
    trim = trims[0]["data"]
    assert (trim["dropped_messages"], trim["dropped_tokens"]) == (
        2,
        size("first question", "first answer"),
    )
    assert (trim["kept_messages"], trim["context_tokens"], trim["max_context_tokens"]) == (
        4,
        window,
        window,
    )
    assert trim["prompt_id"] == str(result.command_id)


async def test_a_tool_call_leaves_the_request_with_its_results(bus: MessageBus) -> None:
    provider = ScriptedProvider(
        [ScriptedProvider.call("lookup", city="Paris"), "Paris is big.", "ok", "fine"]
    )
    definitions = estimate_tokens(
        json.dumps(LLMEngine(MessageBus(log_dir=None), tools=[lookup]).runner.offer(True, None)[0])
    )  # lookup's definition: sent with every request
    engine = LLMEngine(bus, provider=provider, tools=[lookup], max_context_tokens=110 + definitions)
    await engine.chat("look Paris up")  # user, assistant(call), tool (long), assistant
    await engine.chat("thanks")
    await engine.chat("bye")
    # The whole first turn went at once: never a tool result without its call, or a call
    # without its result.
    assert [m.role for m in provider.requests[2].messages] == ["user"]
    assert [m.role for m in provider.requests[3].messages] == ["user", "assistant", "user"]
    assert len(engine.conversations.get("default").messages) == 8


async def test_a_turn_larger_than_the_window_fails_before_anything_is_sent(
    bus: MessageBus,
) -> None:
    provider = ScriptedProvider(["ok"])
    engine = LLMEngine(bus, provider=provider, max_context_tokens=10)
    result = await bus.execute(PromptCommand(prompt="word " * 50))
    assert not result.success
    assert "max_context_tokens=10" in (result.error or "")
    assert "nothing was sent" in (result.error or "")
    assert provider.requests == []
    assert "default" not in engine.conversations


async def test_max_tokens_is_kept_free_for_the_answer(bus: MessageBus) -> None:
    provider = ScriptedProvider(["ok"])
    LLMEngine(bus, provider=provider)
    result = await bus.execute(
        PromptCommand(prompt="short", max_context_tokens=size("short") + 5, max_tokens=10)
    )
    assert not result.success
    assert "max_tokens=10 kept for the answer" in (result.error or "")


async def test_a_prompt_window_overrides_the_engines(bus: MessageBus) -> None:
    provider = ScriptedProvider(["a", "b", "c"])
    engine = LLMEngine(bus, provider=provider, max_context_tokens=size("one", "a", "two"))
    await engine.chat("one")
    await engine.chat("two")
    await engine.chat("three", max_context_tokens=10_000)
    assert [m.content for m in provider.requests[1].messages] == ["one", "a", "two"]
    assert len(provider.requests[2].messages) == 5
    seen: list[ConversationTrimmedEvent] = []
    bus.register_event_handler(ConversationTrimmedEvent, seen.append)
    provider.add("d")
    await engine.chat("four")
    await bus.wait_for_events()
    assert [e.dropped_messages for e in seen] == [4]


def test_the_engine_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_context_tokens"):
        LLMEngine(MessageBus(log_dir=None), model="offline", max_context_tokens=0)


async def test_the_local_model_counts_with_its_own_tokenizer(bus: MessageBus) -> None:
    from llmgine.llm.providers.local import LocalProvider

    provider = LocalProvider()
    count = await token_counter(provider)
    assert count is not None
    text = "Tokenizers split rare words: antidisestablishmentarianism."
    loaded = await provider._load()
    assert count(text) == len(loaded.llama.tokenize(text.encode(), add_bos=False, special=True))
    assert count(text) != count_tokens(text)
    assert await token_counter(ScriptedProvider()) is None

    window = ContextWindow(100, count, bus, PromptCommand(prompt=text))
    message = ChatMessage(role="user", content=text)
    assert window.tokens(message) == 4 + count(text)
    with pytest.raises(ContextWindowError):
        await ContextWindow(5, count, bus, PromptCommand(prompt=text)).fit([], [], [], [message])


async def test_the_tools_definitions_count_against_the_window(bus: MessageBus) -> None:
    provider = ScriptedProvider(["first answer", "second answer"])
    engine = LLMEngine(bus, provider=provider, tools=[lookup])
    await engine.chat("first question")
    definitions = estimate_tokens(json.dumps(provider.requests[0].tools))
    assert definitions > 50  # lookup's docstring and schema
    # Room for this turn and the tools, not for the first turn as well.
    window = size("second question") + definitions + 2
    result = await bus.execute(PromptCommand(prompt="second question", max_context_tokens=window))
    assert result.success, result.error
    assert [m.content for m in provider.requests[1].messages] == ["second question"]


# Texts a small English vocabulary (SmolLM2's, the llama.cpp fixture's) spends many tokens on.
PROSE = (
    "The quarterly report, prepared by the finance team in Zürich, shows revenue of "
    "1,234,567.89 EUR (up 12.5% year-over-year); operating costs rose to 987,654.32 EUR, "
    "mostly from cloud-infrastructure spend (AWS/GCP) and re-negotiated supplier contracts. "
)
HARD_TEXTS = {
    "prose with numbers": PROSE * 6,
    "Japanese": "日本語の文章" * 500,
    "base64": "QUJD" * 3000,
    "digits": "1234567890" * 100,
    "hex": "deadbeef0123456789abcdef" * 200,
    "emoji": "🙂👍🏽" * 200,
    "Russian": "Привет, как дела? Это тестовый текст. " * 50,
    "German compounds": "Donaudampfschifffahrtsgesellschaftskapitän " * 100,
    "code": "def f(x):\n    return {'a': [1, 2, 3], \"b\": x**2}\n" * 50,
    "JSON": '{"city": "Paris", "units": "metric", "id": 123456}' * 40,
    # From review: each of these was counted below SmolLM2's tokens before.
    "random base64": base64.b64encode(hashlib.sha512(b"llmgine").digest() * 8).decode(),
    "sha256 hex": " ".join(hashlib.sha256(bytes([i])).hexdigest() for i in range(16)),
    "Korean": "안녕하세요 반갑습니다. 오늘 회의는 세 시에 시작합니다. " * 20,
    "Vietnamese": "Tiếng Việt có nhiều dấu thanh và chữ cái đặc biệt. " * 20,
    "combining accents": "e\u0301a\u0300o\u0308" * 30,
    "CRLF lines": "line one\r\nline two\r\n" * 40,
    "tab-indented code": "\tif x:\n\t\treturn y\n" * 40,
    "mixedCase": "xYzQwErTy aBcDeFgH " * 20,
}


@pytest.mark.parametrize("text", list(HARD_TEXTS.values()), ids=list(HARD_TEXTS))
async def test_without_a_tokenizer_the_window_counts_at_least_a_real_tokenizers_tokens(
    bus: MessageBus, text: str
) -> None:
    from llmgine.llm.providers.local import LocalProvider

    real = len((await LocalProvider()._load()).llama.tokenize(text.encode(), add_bos=False))
    window = ContextWindow(100_000, None, bus, PromptCommand(prompt=text))
    assert window.tokens(ChatMessage(role="user", content=text)) >= 4 + real
    assert estimate_tokens(text) >= count_tokens(text)  # never below the usage estimate


@pytest.mark.parametrize("text", ["日本語の文章" * 500, "QUJD" * 3000])
async def test_a_turn_without_spaces_too_large_for_the_window_fails_before_anything_is_sent(
    bus: MessageBus, text: str
) -> None:
    provider = ScriptedProvider(["ok"])
    LLMEngine(bus, provider=provider, max_context_tokens=2048)
    result = await bus.execute(PromptCommand(prompt=text, max_tokens=16))
    assert result.error_type == "ContextWindowError"
    assert "estimated high" in (result.error or "")
    assert "raise max_context_tokens" in (result.error or "")
    assert "or lower max_tokens" in (result.error or "")
    assert provider.requests == []


@pytest.mark.timeout(600)
async def test_turns_trimmed_to_the_real_servers_window_are_all_accepted(
    bus: MessageBus, llama_server: LlamaServer
) -> None:
    provider = OpenAIProvider(
        llama_server.model, api_key="sk-no-key", base_url=llama_server.base_url, max_retries=0
    )
    engine = LLMEngine(
        bus,
        provider=provider,
        max_context_tokens=llama_server.n_ctx,
        retries=None,
        prices={},
        timeout=300,
    )
    trims: list[ConversationTrimmedEvent] = []
    bus.register_event_handler(ConversationTrimmedEvent, trims.append)
    try:
        for turn in range(6):  # about 520 real tokens a turn: the oldest leave from the 4th on
            result = await bus.execute(
                PromptCommand(prompt=f"Turn {turn}. Summarise: {PROSE * 6}", max_tokens=8)
            )
            assert result.success, result.error
    finally:
        await provider.aclose()
    await bus.wait_for_events()
    assert trims
    assert len(engine.conversations.get("default").messages) == 12  # the store keeps all
