"""Commands the LLM engine handles."""

from __future__ import annotations

from llmgine.messages.commands import Command

__all__ = ["ClearConversationCommand", "PromptCommand", "SetSystemPromptCommand"]


class PromptCommand(Command):
    """Send a prompt; the result is the assistant's final text."""

    prompt: str
    conversation_id: str = "default"
    """Prompts with the same id continue one conversation."""
    model: str | None = None
    """A model string for this prompt only (``"offline"``, ``"openai:gpt-4o-mini"``)."""
    stream: bool = False
    """Stream the answer: ``LLMDeltaEvent``s are published as text arrives."""
    temperature: float | None = None
    max_tokens: int | None = None
    use_tools: bool = True
    """Offer the engine's tools to the model."""


class ClearConversationCommand(Command):
    """Forget a conversation's history (its system prompt stays)."""

    conversation_id: str = "default"


class SetSystemPromptCommand(Command):
    """Set (or with ``None`` remove) the system prompt of a conversation."""

    system_prompt: str | None
    conversation_id: str = "default"
