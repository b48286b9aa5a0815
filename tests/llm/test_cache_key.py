"""The call cache's key: what the provider would send, the same in every process."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from llmgine.llm import ChatMessage, LLMRequest
from llmgine.llm.cache import request_key
from llmgine.llm.cache.key import canonical

BASE: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Héllo ✓"),
    ],
}


def key(provider: str = "openai", endpoint: str | None = "api.openai.com", **changes: Any) -> str:
    return request_key(LLMRequest(**{**BASE, **changes}), provider=provider, endpoint=endpoint)


def test_a_key_is_64_hex_digits_and_the_same_for_the_same_request() -> None:
    assert key() == key()
    assert len(key()) == 64 and int(key(), 16) >= 0


def test_the_key_is_the_same_in_another_python_process() -> None:
    code = (
        "from llmgine.llm import ChatMessage, LLMRequest\n"
        "from llmgine.llm.cache import request_key\n"
        "r = LLMRequest(model='gpt-4o-mini', messages=[ChatMessage(role='system', "
        "content='Be brief.'), ChatMessage(role='user', content='Héllo ✓')], "
        "options={'seed': 1, 'stop': ['x', 'y']}, temperature=0.2)\n"
        "print(request_key(r, provider='openai', endpoint='api.openai.com'))\n"
    )
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment
    )
    assert out.stdout.strip() == key(options={"stop": ["x", "y"], "seed": 1}, temperature=0.2)


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"messages": [ChatMessage(role="user", content="Hello")]},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"tool_choice": "required"},
        {"temperature": 0.7},
        {"max_tokens": 12},
        {"options": {"seed": 7}},
        {"output_schema": {"title": "City", "type": "object"}},
        {"provider": "local"},
        {"endpoint": "127.0.0.1:8080"},
        {"endpoint": None},
    ],
)
def test_every_part_of_the_request_is_part_of_the_key(change: dict[str, Any]) -> None:
    assert key(**change) != key()


def test_the_timeout_and_headers_are_not_part_of_the_key() -> None:
    assert key(timeout=3.0) == key(timeout=120.0) == key()
    headers = {"extra_headers": {"Authorization": "Bearer sk-secret-123"}, "timeout": 9}
    assert key(options={"seed": 1, **headers}) == key(options={"seed": 1})


def test_no_credential_reaches_the_hashed_text() -> None:
    options = {"extra_headers": {"Authorization": "Bearer sk-secret-123"}, "api_key": "sk-x9"}
    request = LLMRequest(**BASE, options=options)
    text = canonical(request, provider="openai", endpoint="api.openai.com")
    assert "sk-secret-123" not in text and "sk-x9" not in text


def test_the_order_of_options_does_not_matter() -> None:
    assert key(options={"seed": 1, "stop": ["."]}) == key(options={"stop": ["."], "seed": 1})
