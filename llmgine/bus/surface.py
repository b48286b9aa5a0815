"""What the bus's own features (command policies, the scheduler) use of the bus."""

from __future__ import annotations

from typing import Any, Protocol

from llmgine.messages.commands import Command, CommandResult
from llmgine.messages.events import Event

__all__ = ["BusSurface"]


class BusSurface(Protocol):
    """A :class:`~llmgine.bus.MessageBus`, as far as its features reach into it."""

    @property
    def remote(self) -> Any:
        """The bridge to the shared bus while connected, else ``None``."""
        ...

    async def publish(self, event: Event) -> None:
        """Publish ``event``."""
        ...

    async def execute(self, command: Command, *, timeout: float | None = None) -> CommandResult:
        """Execute ``command``."""
        ...
