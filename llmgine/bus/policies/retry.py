"""``Retry``: run a failed command again, after a growing wait."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterable

from llmgine.bus.middleware import CallNext
from llmgine.bus.policies.binding import Bound
from llmgine.bus.policies.events import CommandRetriedEvent
from llmgine.bus.policies.matching import CommandTypes, FailureFilter, command_types, failure_filter
from llmgine.errors import ConfigurationError
from llmgine.messages.commands import Command, CommandResult

__all__ = ["Retry"]


class Retry(Bound):
    """Middleware: a failed command of ``command_type`` runs again, up to ``attempts`` tries.

    The wait before try ``n + 1`` is ``backoff * 2 ** (n - 1)`` seconds (at most
    ``max_backoff``), with jitter; each retry is a ``CommandRetriedEvent``. The
    result says how many tries it took (``metadata["attempts"]``) once there was
    more than one. ``execute(timeout=...)`` bounds each try, not all of them.

    Args:
        command_type: The command class (or a tuple of them; subclasses count).
        attempts: Tries in all, the first included.
        backoff: Seconds of the first wait.
        max_backoff: The longest wait.
        retry_on: Which failures are retried: exception classes (their subclasses too)
            or class names, matched against ``CommandResult.error_type``, or a function
            of the failed result; ``None``: every failure.
    """

    def __init__(
        self,
        command_type: CommandTypes = Command,
        *,
        attempts: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        retry_on: Iterable[type[BaseException] | str] | FailureFilter | None = None,
    ) -> None:
        if attempts < 1:
            raise ConfigurationError(
                f"Retry(attempts=...) counts the first try: 1 or more; got {attempts}."
            )
        if not (0 <= backoff < math.inf and 0 <= max_backoff < math.inf):
            raise ConfigurationError(
                f"Retry needs backoff >= 0 and max_backoff >= 0; got {backoff}, {max_backoff}."
            )
        self.command_types = command_types(command_type)
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retry_on = failure_filter(retry_on)

    def __repr__(self) -> str:
        names = ", ".join(t.__name__ for t in self.command_types)
        return f"Retry({names}, attempts={self.attempts}, backoff={self.backoff:g})"

    async def __call__(self, command: Command, call_next: CallNext) -> CommandResult:
        """Run ``command``, again while it fails in a way worth retrying."""
        if not isinstance(command, self.command_types):
            return await call_next(command)
        attempt = 1
        while True:
            result = await call_next(command)
            if result.success or attempt >= self.attempts or not self.retry_on(result):
                if attempt > 1:
                    result = result.model_copy(
                        update={"metadata": {**result.metadata, "attempts": attempt}}
                    )
                return result
            wait = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
            wait *= random.uniform(0.5, 1.0)
            await self.publish(
                CommandRetriedEvent(
                    session_id=command.session_id,
                    command_id=command.id,
                    command_type=type(command).__name__,
                    attempt=attempt,
                    error=result.error,
                    error_type=result.error_type,
                    wait_s=wait,
                )
            )
            await asyncio.sleep(wait)
            attempt += 1
