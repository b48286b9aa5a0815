"""Every error llmgine raises on purpose.

All of them derive from :class:`LLMgineError`, so ``except LLMgineError`` catches
anything the library raises deliberately. Where an error resembles a builtin, it
subclasses that builtin too, so ``except ValueError`` or ``except LookupError``
keeps working::

    LLMgineError
    ├── HandlerAlreadyRegisteredError   (also ValueError)
    ├── HandlerNotFoundError            (also LookupError)
    └── BusStateError                   (also RuntimeError)
"""

from __future__ import annotations

__all__ = [
    "BusStateError",
    "HandlerAlreadyRegisteredError",
    "HandlerNotFoundError",
    "LLMgineError",
]


class LLMgineError(Exception):
    """Root of every error llmgine raises on purpose."""


class HandlerAlreadyRegisteredError(LLMgineError, ValueError):
    """A command type already has a different handler; a command has exactly one."""


class HandlerNotFoundError(LLMgineError, LookupError):
    """No handler is registered for the command that was executed."""


class BusStateError(LLMgineError, RuntimeError):
    """The bus was asked for something its current state does not allow."""
