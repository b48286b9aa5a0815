"""The events the command policies publish."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from llmgine.messages.events import Event

__all__ = ["CircuitState", "CircuitStateChangedEvent", "CommandRetriedEvent", "DeadLetterEvent"]

CircuitState = Literal["closed", "open", "half_open"]


class CommandRetriedEvent(Event):
    """A command failed and ``Retry`` runs it again after a wait."""

    command_id: UUID
    command_type: str
    attempt: int
    """The try that failed (1 is the first)."""
    error: str | None
    error_type: str | None
    wait_s: float
    """Seconds waited before the next try."""


class CircuitStateChangedEvent(Event):
    """A ``CircuitBreaker`` opened (failing fast), half-opened (one trial) or closed again."""

    command_type: str
    state: CircuitState
    previous: CircuitState
    failures: int
    """Failures in a row when it changed."""
    reset_after: float
    """Seconds an open circuit waits before its trial call."""


class DeadLetterEvent(Event):
    """A command still failed after every policy: it is kept, and can be run again."""

    dead_letter_id: str
    command_id: UUID
    command_type: str
    error: str | None
    error_type: str | None
    redrive_of: str | None = None
    """When a redriven command failed again: the dead letter it was redriven from."""
