"""Middleware: code run around every command's handler, as in Starlette.

A middleware is an async callable ``mw(command, call_next) -> CommandResult``;
``await call_next(command)`` runs the rest of the chain and, at its end, the
command's handler (local, or in another process over the shared bus), and
returns its ``CommandResult``: a handler or an inner middleware that raised gives
a failed one, so ``call_next`` never raises for them (an interrupt or a cancel
from outside still goes through). A middleware may look at or change the result,
call ``call_next`` again (a retry), pass on a changed copy of the command
(``command.model_copy(update=...)``; another type of command is refused: execute
that one on the bus), or return a result of its own without calling it
(short-circuit: an auth check). The first middleware added runs outermost.

Example:
    >>> async def timing(command, call_next):  # doctest: +SKIP
    ...     start = time.perf_counter()
    ...     result = await call_next(command)
    ...     print(type(command).__name__, time.perf_counter() - start)
    ...     return result
    >>> bus.add_middleware(timing)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from llmgine.messages.commands import Command, CommandResult

__all__ = ["CallNext", "Failed", "Middleware", "chain"]

CallNext = Callable[[Command], Awaitable[CommandResult]]
"""What a middleware calls to run the rest of the chain and the handler."""

Middleware = Callable[[Command, CallNext], Awaitable[CommandResult]]
"""An async callable ``mw(command, call_next) -> CommandResult`` (see the module)."""

Failed = Callable[[Command, BaseException], CommandResult]
"""The failed result of what a middleware raised (it raises again what must go on)."""


def chain(middleware: tuple[Middleware, ...], handler: CallNext, failed: Failed) -> CallNext:
    """Return ``handler`` wrapped in ``middleware``, the first one outermost.

    What a middleware raises, or a value it returns that is not a ``CommandResult``,
    becomes ``failed(command, error)`` for the middleware around it.
    """
    call_next = handler
    for mw in reversed(middleware):
        call_next = _step(mw, call_next, failed)
    return call_next


def _step(mw: Middleware, call_next: CallNext, failed: Failed) -> CallNext:
    async def step(command: Command) -> CommandResult:
        try:
            result = await mw(command, call_next)
        except BaseException as exc:
            return failed(command, exc)
        if not isinstance(result, CommandResult):
            if inspect.iscoroutine(result):  # `return call_next(command)`, await forgotten
                result.close()  # no "never awaited" warning on top of this error
                return failed(
                    command,
                    TypeError(
                        f"The middleware {getattr(mw, '__qualname__', repr(mw))} returned a "
                        "coroutine, not a CommandResult: write `return await "
                        "call_next(command)` (call_next is async)."
                    ),
                )
            return failed(
                command,
                TypeError(
                    f"The middleware {getattr(mw, '__qualname__', repr(mw))} returned "
                    f"{type(result).__name__}, not a CommandResult; return what "
                    "call_next(command) returned, or a CommandResult of its own."
                ),
            )
        return result

    return step
