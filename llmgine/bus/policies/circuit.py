"""``CircuitBreaker``: stop calling a handler that keeps failing, try again after a pause."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from llmgine.bus.middleware import CallNext
from llmgine.bus.policies.binding import Bound
from llmgine.bus.policies.events import CircuitState, CircuitStateChangedEvent
from llmgine.bus.policies.matching import CommandTypes, FailureFilter, command_types, failure_filter
from llmgine.errors import CircuitOpenError, ConfigurationError
from llmgine.messages.commands import Command, CommandResult

__all__ = ["CircuitBreaker"]


class CircuitBreaker(Bound):
    """Middleware: after ``failures`` failures in a row, commands fail fast for a while.

    Closed (normal): commands run; ``failures`` failures in a row open it. Open:
    commands fail at once with ``CircuitOpenError`` (their handler is not called)
    until ``reset_after`` seconds have passed; then it is half-open: one command
    runs as a trial (others still fail fast), and its success closes the circuit,
    its failure opens it again. Each change is a ``CircuitStateChangedEvent``.
    One breaker counts all the commands it covers together.

    Args:
        command_type: The command class (or a tuple of them; subclasses count).
        failures: Failures in a row that open the circuit.
        reset_after: Seconds the circuit stays open before a trial.
        count_on: Which failures count (as ``Retry``'s ``retry_on``); ``None``: all.
    """

    def __init__(
        self,
        command_type: CommandTypes = Command,
        *,
        failures: int = 5,
        reset_after: float = 30.0,
        count_on: Iterable[type[BaseException] | str] | FailureFilter | None = None,
    ) -> None:
        if failures < 1:
            raise ConfigurationError(
                f"CircuitBreaker(failures=...) must be 1 or more; got {failures}."
            )
        if not 0 < reset_after < math.inf:
            raise ConfigurationError(
                f"CircuitBreaker(reset_after=...) must be more than 0 seconds; got {reset_after}."
            )
        self.command_types = command_types(command_type)
        self.failures = failures
        self.reset_after = reset_after
        self.count_on = failure_filter(count_on)
        self.state: CircuitState = "closed"
        self.failed_in_a_row = 0
        self._opened_at = 0.0
        self._trial_running = False

    def __repr__(self) -> str:
        names = ", ".join(t.__name__ for t in self.command_types)
        return f"CircuitBreaker({names}, {self.state}, {self.failed_in_a_row} failed in a row)"

    async def __call__(self, command: Command, call_next: CallNext) -> CommandResult:
        """Run ``command`` unless the circuit is open."""
        if not isinstance(command, self.command_types):
            return await call_next(command)
        if self.state == "open" and time.monotonic() - self._opened_at >= self.reset_after:
            await self._change("half_open")
        trial = False
        if self.state == "open" or (self.state == "half_open" and self._trial_running):
            raise CircuitOpenError(self._refusal())
        if self.state == "half_open":
            trial = self._trial_running = True
        try:
            result = await call_next(command)
        finally:
            if trial:
                self._trial_running = False
        if result.success:
            self.failed_in_a_row = 0
            if self.state != "closed":
                await self._change("closed")
        elif self.count_on(result):
            self.failed_in_a_row += 1
            if trial or (self.state == "closed" and self.failed_in_a_row >= self.failures):
                self._opened_at = time.monotonic()
                await self._change("open")
        return result

    def _refusal(self) -> str:
        names = ", ".join(t.__name__ for t in self.command_types)
        left = max(self.reset_after - (time.monotonic() - self._opened_at), 0.0)
        trial = (
            "a trial call is running" if self.state == "half_open" else f"a trial in {left:.1f} s"
        )
        return (
            f"The circuit for {names} is open after {self.failed_in_a_row} failures in a row; "
            f"the command was not run ({trial}). Fix what makes it fail, or wait."
        )

    async def _change(self, state: CircuitState) -> None:
        previous, self.state = self.state, state
        await self.publish(
            CircuitStateChangedEvent(
                command_type=", ".join(t.__name__ for t in self.command_types),
                state=state,
                previous=previous,
                failures=self.failed_in_a_row,
                reset_after=self.reset_after,
            )
        )
