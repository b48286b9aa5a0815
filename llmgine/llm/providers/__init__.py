"""Providers: one small async interface (complete and stream), and model strings."""

from llmgine.llm.providers.base import Capabilities, Provider, count_tokens, word_chunks
from llmgine.llm.providers.offline import OfflineProvider
from llmgine.llm.providers.openai import OpenAIProvider
from llmgine.llm.providers.replay import ReplayProvider
from llmgine.llm.providers.resolve import default_model, provider_for
from llmgine.llm.providers.scripted import ScriptedProvider
from llmgine.llm.providers.wrapper import WrapperProvider

__all__ = [
    "Capabilities",
    "OfflineProvider",
    "OpenAIProvider",
    "Provider",
    "ReplayProvider",
    "ScriptedProvider",
    "WrapperProvider",
    "count_tokens",
    "default_model",
    "provider_for",
    "word_chunks",
]
