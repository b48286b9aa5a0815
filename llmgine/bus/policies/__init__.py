"""Command-level policies, as bus middleware: retries, circuit breakers, dead letters.

Each is a middleware (``bus.add_middleware(policy)``), so it runs around local and
remote handlers alike; the first added runs outermost. A usual stack, outermost
first: ``DeadLetters()`` (keeps what still fails), ``CircuitBreaker(...)`` (fails fast
while a handler is down), ``Retry(...)`` (tries again)::

    bus.add_middleware(DeadLetters())
    bus.add_middleware(CircuitBreaker(FetchCommand, failures=5, reset_after=30))
    bus.add_middleware(Retry(FetchCommand, attempts=3, backoff=0.5))
"""

from __future__ import annotations

from llmgine.bus.policies.circuit import CircuitBreaker
from llmgine.bus.policies.dead_letters import DeadLetter, DeadLetters
from llmgine.bus.policies.events import (
    CircuitStateChangedEvent,
    CommandRetriedEvent,
    DeadLetterEvent,
)
from llmgine.bus.policies.retry import Retry

__all__ = [
    "CircuitBreaker",
    "CircuitStateChangedEvent",
    "CommandRetriedEvent",
    "DeadLetter",
    "DeadLetterEvent",
    "DeadLetters",
    "Retry",
]
