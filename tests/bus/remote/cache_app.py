"""A worker holding a model with the shared call cache (``cache="redis"``).

``python -m llmgine worker cache_app:setup``; the model is the fake OpenAI server at
``$CACHE_APP_BASE_URL`` (the test's), so the test counts the requests that reach it.
"""

from __future__ import annotations

import os

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, OpenAIProvider


def setup(bus: MessageBus) -> None:
    provider = OpenAIProvider(
        "fake-gpt", api_key="sk-test", base_url=os.environ["CACHE_APP_BASE_URL"], max_retries=0
    )
    LLMEngine(bus, provider=provider, cache="redis")
