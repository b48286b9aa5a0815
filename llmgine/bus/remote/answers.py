"""What a worker answers for a command: its handler's result, or why it cannot run it.

The handler runs in a span that is a child of the caller's span (so a trace spans the
processes), in the command's session; every outcome is a ``CommandResult``. A command
that does not decode here, or that crashed every worker it was handed to, is answered
as failed, with what to do about it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from llmgine.bus.handlers import as_result, cancelled_from_outside, describe, failure_result
from llmgine.bus.session import _current_session
from llmgine.errors import HandlerNotFoundError, HandlerTimedOut
from llmgine.messages.commands import Command, CommandResult
from llmgine.observability.spans import Span, _current_span

if TYPE_CHECKING:
    from llmgine.bus.ports import BusPort

__all__ = ["crashed", "run_handler", "undecodable"]

logger = logging.getLogger(__name__)


async def run_handler(
    port: BusPort, command: Command, parent: Any, caller: str, timeout: float | None
) -> tuple[CommandResult, str]:
    """Run the local handler in a child span of the caller's span; never raises.

    Returns the result and the traceback of the handler's exception (if any). Only the
    cancellation of the worker's own task propagates (it is shutting down).

    Args:
        port: The local bus (its handlers; the span is emitted on it).
        command: The command.
        parent: The caller's span.
        caller: The caller's process id (an attribute of the span).
        timeout: What is left of the caller's timeout, if it gave one.
    """
    bus = port
    command_type = type(command).__name__
    start = time.perf_counter()
    span_token = _current_span.set(parent)
    session_token = _current_session.set(command.session_id)
    tb = ""
    try:
        try:
            handler = bus.command_handler(type(command))
        except HandlerNotFoundError as exc:
            return failure_result(command, start, str(exc), type(exc).__name__), ""
        span = Span(
            bus.emit,
            command_type,
            kind="CHAIN",
            session_id=command.session_id,
            attributes={
                "llmgine.command.type": command_type,
                "llmgine.remote.caller": caller,
            },
        )
        async with span:
            try:
                # Sync handlers run in a handler thread: the loop goes on beating.
                value = await bus.call_handler(handler, command, timeout)
            except HandlerTimedOut as exc:
                message = f"{exc} (the caller's timeout)"
                span.set_status("ERROR", f"TimeoutError: {message}")
                return failure_result(command, start, message, "TimeoutError"), ""
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError) and cancelled_from_outside():
                    raise
                message, error_type, tb = describe(exc)
                span.set_status("ERROR", f"{error_type}: {message}")
                return failure_result(command, start, message, error_type), tb
            result = as_result(value, command, start)
            if not result.success:
                span.set_status("ERROR", f"{result.error_type}: {result.error}")
            return result, tb
    finally:
        _current_session.reset(session_token)
        _current_span.reset(span_token)


def undecodable(worker: str, stream: str, command_id: str | None, exc: Exception) -> CommandResult:
    """The failed result of a command this worker cannot decode (another version of it)."""
    type_name = stream.rpartition(":cmd:")[2] or stream
    message = (
        f"Worker {worker} could not decode this {type_name}: {_one_line(exc)}. "
        "The caller and the worker run different versions of the command's class; "
        "deploy the same version to both."
    )
    logger.error("Answered a command that does not decode as failed: %s", message)
    return CommandResult(
        success=False,
        error=message,
        error_type="CommandDecodeError",
        command_type=type_name.rpartition(".")[2],
        command_id=_uuid(command_id),
    )


def crashed(command: Command, deliveries: int, max_deliveries: int) -> CommandResult:
    """The failed result of a command whose every delivery ended with its worker dead."""
    message = (
        f"the command crashed {deliveries} workers (each that took it stopped answering "
        f"before it finished); it is not run again (max_deliveries={max_deliveries})"
    )
    logger.error("%s %s: %s.", type(command).__name__, command.id, message)
    return failure_result(command, time.perf_counter(), message, "WorkerCrashedError")


def _one_line(exc: BaseException) -> str:
    """An error's message on one line (a pydantic error spans several)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 500 else text[:497] + "..."


def _uuid(raw: str | None) -> uuid.UUID | None:
    try:
        return None if raw is None else uuid.UUID(raw)
    except ValueError:
        return None
