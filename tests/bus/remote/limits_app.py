"""A worker holding a model under rate limits shared over Redis.

``python -m llmgine worker limits_app:setup``; the model is the rate-limited fake server
at ``$LIMITS_APP_BASE_URL`` (the test's), the limit ``$LIMITS_APP_RPM`` requests a minute.
"""

from __future__ import annotations

import os

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, OpenAIProvider, RateLimits


def setup(bus: MessageBus) -> None:
    provider = OpenAIProvider(
        "fake-gpt", api_key="sk-test", base_url=os.environ["LIMITS_APP_BASE_URL"]
    )
    limits = RateLimits(requests_per_minute=float(os.environ["LIMITS_APP_RPM"]))
    LLMEngine(bus, provider=provider, limits=limits, retries=None)
