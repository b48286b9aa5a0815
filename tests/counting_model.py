"""A model that answers ``answer to <prompt>`` and counts its calls: for the cache tests."""

from __future__ import annotations

from llmgine.llm.providers.base import Provider
from llmgine.llm.types import ChatMessage, Completion, LLMRequest


class Counting(Provider):
    """Answers ``answer to <prompt>`` and counts its calls."""

    name = "counting"

    def __init__(self) -> None:
        super().__init__("count-1")
        self.calls = 0

    async def complete(self, request: LLMRequest) -> Completion:
        self.calls += 1
        return Completion(content=f"answer to {request.messages[-1].content}")


def request(prompt: str) -> LLMRequest:
    """A request of one user message, to the counting model."""
    return LLMRequest(model="count-1", messages=[ChatMessage(role="user", content=prompt)])
