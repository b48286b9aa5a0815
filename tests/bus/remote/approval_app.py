"""Engine workers of the shared-bus approval tests (python -m llmgine worker approval_app:setup)."""

from __future__ import annotations

import os

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine


def write_marker(path: str) -> str:
    """Append this process's id to a file: one line per run of the call.

    Args:
        path: The file.
    """
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")
    return f"wrote {path}"


def setup(bus: MessageBus) -> None:
    """An offline engine whose one tool waits for approval."""
    engine = LLMEngine(bus, model="offline")
    engine.register_tool(write_marker, requires_approval=True)
    engine.approvals.timeout = 120.0
