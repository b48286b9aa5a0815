"""Messages: the pydantic models that travel on the bus."""

from llmgine.messages.base import Message
from llmgine.messages.commands import Command, CommandResult
from llmgine.messages.events import (
    CommandErrorEvent,
    CommandResultEvent,
    Event,
    EventHandlerFailedEvent,
    SinkFailedEvent,
    SinkRecoveredEvent,
)

__all__ = [
    "Command",
    "CommandErrorEvent",
    "CommandResult",
    "CommandResultEvent",
    "Event",
    "EventHandlerFailedEvent",
    "Message",
    "SinkFailedEvent",
    "SinkRecoveredEvent",
]
