"""Providers: one small async interface (complete and stream), and model strings."""

from llmgine.llm.providers.base import Provider, count_tokens, word_chunks
from llmgine.llm.providers.offline import OfflineProvider
from llmgine.llm.providers.openai import OpenAIProvider
from llmgine.llm.providers.replay import ReplayProvider
from llmgine.llm.providers.resolve import default_model, provider_for
from llmgine.llm.providers.scripted import ScriptedProvider

__all__ = [
    "OfflineProvider",
    "OpenAIProvider",
    "Provider",
    "ReplayProvider",
    "ScriptedProvider",
    "count_tokens",
    "default_model",
    "provider_for",
    "word_chunks",
]
