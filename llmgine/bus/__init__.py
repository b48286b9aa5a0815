"""The message bus: commands, events, sessions, and the transport that carries events."""

from llmgine.bus.bus import MessageBus
from llmgine.bus.registry import Registration
from llmgine.bus.session import BusSession, current_session_id
from llmgine.bus.stats import BusStats
from llmgine.bus.transport import LocalTransport, Transport

__all__ = [
    "BusSession",
    "BusStats",
    "LocalTransport",
    "MessageBus",
    "Registration",
    "Transport",
    "current_session_id",
]
