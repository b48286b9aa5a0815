"""The message bus: commands, events, sessions, and the transport that carries events."""

from typing import Any

from llmgine.bus.bus import MessageBus
from llmgine.bus.policies import (
    CircuitBreaker,
    CircuitStateChangedEvent,
    CommandRetriedEvent,
    DeadLetter,
    DeadLetterEvent,
    DeadLetters,
    Retry,
)
from llmgine.bus.ports import Bridge, BusPort
from llmgine.bus.registry import Registration
from llmgine.bus.schedules import Scheduled, ScheduleFiredEvent, ScheduleLostEvent
from llmgine.bus.session import BusSession, current_session_id
from llmgine.bus.stats import BusStats
from llmgine.bus.transport import LocalTransport, Transport
from llmgine.errors import BusStateError, ConfigurationError

__all__ = [
    "BusSession",
    "BusStats",
    "CircuitBreaker",
    "CircuitStateChangedEvent",
    "CommandRetriedEvent",
    "DeadLetter",
    "DeadLetterEvent",
    "DeadLetters",
    "LocalTransport",
    "MessageBus",
    "Registration",
    "Retry",
    "ScheduleFiredEvent",
    "ScheduleLostEvent",
    "Scheduled",
    "Transport",
    "current_session_id",
]


def _shared_bus_on_redis(port: BusPort, url: str, namespace: str, **options: Any) -> Bridge:
    """The default bridge of ``bus.connect``: the shared bus on Redis (imported on first use)."""
    try:
        from llmgine.bus.remote.link import RedisLink
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BusStateError(
            "bus.connect() needs the redis package: pip install 'llmgine[redis]'."
        ) from exc
    try:
        return RedisLink(port, url, namespace, **options)
    except ConfigurationError:
        raise
    except ValueError as exc:  # redis-py's word on a URL it cannot read
        from llmgine.bus.remote.clients import url_error

        raise url_error(url, exc) from None


MessageBus.bridge_factory = _shared_bus_on_redis  # the one place a bridge is wired in
