"""Engine workers sharing conversations in Redis (worker conversation_app:setup)."""

from __future__ import annotations

import os

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine


def whoami(path: str) -> str:
    """Write this process's id to a file and return it.

    Args:
        path: The file.
    """
    with open(path, "w", encoding="utf-8") as f:
        f.write(str(os.getpid()))
    return f"pid {os.getpid()}"


def setup(bus: MessageBus) -> None:
    """An offline engine keeping its conversations in the shared bus's Redis (connected later)."""
    LLMEngine(bus, model="offline", tools=[whoami], system_prompt="Shared.", conversations="redis")
