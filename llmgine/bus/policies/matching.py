"""Which commands a policy applies to, and which failures it counts."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from llmgine.errors import ConfigurationError
from llmgine.messages.commands import Command, CommandResult

__all__ = ["CommandTypes", "FailureFilter", "command_types", "failure_filter"]

CommandTypes = type[Command] | tuple[type[Command], ...]
"""A command class, or several; subclasses count too."""

FailureFilter = Callable[[CommandResult], bool]
"""Whether a failed result counts."""


def command_types(types: CommandTypes) -> tuple[type[Command], ...]:
    """The classes as a tuple, checked."""
    found = types if isinstance(types, tuple) else (types,)
    for cls in found:
        if not (isinstance(cls, type) and issubclass(cls, Command)):
            raise ConfigurationError(
                f"A policy applies to Command classes (or a tuple of them); got {cls!r}."
            )
    return found


def failure_filter(
    on: Iterable[type[BaseException] | str] | FailureFilter | None,
) -> FailureFilter:
    """A filter from error classes or names (subclasses count), a function, or ``None`` (all)."""
    if on is None:
        return lambda result: True
    if callable(on) and not isinstance(on, type):
        return on
    names: set[str] = set()
    for item in on:  # type: ignore[union-attr]  # not callable: an iterable of classes/names
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, type) and issubclass(item, BaseException):
            names.update(_names_with_subclasses(item))
        else:
            raise ConfigurationError(
                f"retry_on takes exception classes, their names or a function; got {item!r}."
            )
    return lambda result: result.error_type in names


def _names_with_subclasses(cls: type[BaseException]) -> set[str]:
    names = {cls.__name__}
    for sub in cls.__subclasses__():
        names |= _names_with_subclasses(sub)
    return names
