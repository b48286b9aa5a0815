"""A provider that holds another: the base of every step of the engine's call pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator

from llmgine.llm.providers.base import Capabilities, Provider
from llmgine.llm.types import Completion, LLMRequest, StreamChunk

__all__ = ["WrapperProvider"]


class WrapperProvider(Provider):
    """A :class:`Provider` in front of another one, ``inner``; everything is forwarded.

    Like an httpx transport wrapping a transport: a subclass overrides only what it
    changes (``complete`` and ``stream``, usually) and calls ``self.inner`` for the
    rest, so wrappers compose and each can be tested alone against a fake inner.
    ``name``, ``model``, ``model_string`` and ``capabilities`` are the inner
    provider's; setting ``model`` sets the inner one's.

    Args:
        inner: The provider this one sends requests on to.
    """

    name = "wrapper"  # replaced per instance by the inner provider's name

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]  # a wrapper speaks as its inner provider

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    @property
    def model(self) -> str:
        """The inner provider's model."""
        return self.inner.model

    @model.setter
    def model(self, value: str) -> None:
        self.inner.model = value

    @property
    def model_string(self) -> str:
        """The inner provider's model string."""
        return self.inner.model_string

    @property
    def endpoint(self) -> str | None:
        """The inner provider's server."""
        return self.inner.endpoint

    @property
    def capabilities(self) -> Capabilities:
        """The inner provider's capabilities (read on every call: they may change)."""
        return self.inner.capabilities

    async def aclose(self) -> None:
        """Close the inner provider."""
        await self.inner.aclose()

    async def complete(self, request: LLMRequest) -> Completion:
        """Answer through the inner provider."""
        return await self.inner.complete(request)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream through the inner provider."""
        async for chunk in self.inner.stream(request):
            yield chunk
