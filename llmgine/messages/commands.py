"""Commands (requests for exactly one handler to act) and their results."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from llmgine.messages.base import Message

__all__ = ["Command", "CommandResult", "YourCommand"]


class Command(Message):
    """A request to perform an action, handled by exactly one handler.

    Name subclasses imperatively, e.g. ``ProcessDocumentCommand``.
    """


class CommandResult(BaseModel):
    """What ``MessageBus.execute`` returns for a command.

    A handler may return a ``CommandResult`` itself, or any value, which becomes
    ``result`` of a successful ``CommandResult``. A handler that raises gives
    ``success=False`` with the exception's message and type name.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    success: bool
    """Whether the handler completed without raising."""
    result: Any = None
    """The handler's return value."""
    error: str | None = None
    """The error message, when ``success`` is false."""
    error_type: str | None = None
    """The exception's class name, when ``success`` is false."""
    command_id: UUID | None = None
    """The ``id`` of the command this is the result of."""
    command_type: str | None = None
    """The class name of the command."""
    duration_ms: float | None = None
    """How long the handler ran, in milliseconds."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free-form extra information from the handler."""

    def _repr_html_(self) -> str:
        from llmgine._html import table

        title = f"{self.command_type or 'Command'}: {'OK' if self.success else 'FAILED'}"
        rows: list[tuple[str, Any]] = (
            [("result", self.result)]
            if self.success
            else [("error", f"{self.error_type}: {self.error}")]
        )
        if self.duration_ms is not None:
            rows.append(("duration", f"{self.duration_ms:.1f} ms"))
        rows += list(self.metadata.items())
        return table(title, rows)

    def _repr_markdown_(self) -> str:
        if self.success:
            return f"**{self.command_type}** succeeded: `{self.result!r}`"
        return f"**{self.command_type}** failed: `{self.error_type}: {self.error}`"


class YourCommand(Command):
    """A command with no fields: the placeholder the original README imports.

    Define your own by subclassing :class:`Command`, e.g.
    ``class ProcessDocumentCommand(Command): path: str``.
    """
