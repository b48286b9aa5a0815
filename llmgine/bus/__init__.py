"""The message bus: commands, events, sessions."""

from llmgine.bus.bus import BusStats, MessageBus
from llmgine.bus.registry import Registration
from llmgine.bus.session import BusSession, current_session_id

__all__ = ["BusSession", "BusStats", "MessageBus", "Registration", "current_session_id"]
