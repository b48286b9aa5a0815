"""The ``df.llmgine`` accessor (defined in :mod:`llmgine._accessor`, light to import)."""

from llmgine._accessor import LLMgineAccessor

__all__ = ["LLMgineAccessor"]
