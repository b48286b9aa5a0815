"""Reading a ``%llmgine`` line: options, words, names and expressions of the notebook.

Every mistake is a :class:`~llmgine.errors.MagicError` that says what to type instead.
"""

from __future__ import annotations

import argparse
import builtins
import shlex
from typing import Any

from pydantic import ValidationError

from llmgine._validation import describe_validation_error, validation_problems
from llmgine.errors import MagicError

__all__ = ["Parser", "evaluate", "instantiate", "lookup", "message_class", "parser", "split"]


class Parser(argparse.ArgumentParser):
    """An ``argparse`` parser whose errors are one-line ``MagicError``s, never an exit."""

    def error(self, message: str) -> Any:
        """Raise the parse error as a ``MagicError`` naming the subcommand."""
        raise MagicError(f"{self.prog}: {message}")


def parser(name: str) -> Parser:
    """A parser for ``%llmgine NAME`` (no ``--help``: ``%llmgine help`` is the help)."""
    return Parser(prog=f"%llmgine {name}", add_help=False)


def split(line: str, name: str) -> list[str]:
    """The words of ``line`` as a shell splits them; a bad quote is a readable error."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise MagicError(
            f"%llmgine {name}: {str(exc).lower()} in {line.strip()!r}; close the quote"
        ) from None


def lookup(shell: Any, name: str, what: str = "value") -> Any:
    """The value of ``name`` in the notebook, or a ``MagicError`` if it is not defined.

    ``what`` the name should be (``"function"``) goes into the error for a built-in
    (``str``) or for a word that is no name at all (``42``).
    """
    if name in shell.user_ns:
        return shell.user_ns[name]
    if not name.isidentifier():
        raise MagicError(f"{name!r} is not a name; give the name of a {what} of this notebook")
    if hasattr(builtins, name):
        raise MagicError(
            f"{name} is a Python built-in, not a {what} of this notebook; define one in a "
            "cell and give its name"
        )
    raise MagicError(f"name {name!r} is not defined in this notebook")


def evaluate(shell: Any, expression: str, what: str) -> Any:
    """``expression`` evaluated in the notebook; its failure is one readable line."""
    if not expression.strip():
        raise MagicError(f"give an expression to {what}, e.g. `%llmgine {what} MyCommand(x=1)`")
    try:
        return eval(expression, shell.user_ns)
    except ValidationError as exc:
        problems = describe_validation_error(exc, whole="value")
        raise MagicError(f"could not evaluate {expression!r}: {problems}") from None
    except Exception as exc:
        raise MagicError(
            f"could not evaluate {expression!r}: {type(exc).__name__}: {exc}"
        ) from None


def instantiate(message_type: type, what: str) -> Any:
    """``PingCommand`` given alone: an instance with its defaults, or say which fields it needs."""
    try:
        return message_type()
    except ValidationError as exc:
        problems = validation_problems(exc, whole="value")
        kinds = [error["type"] for error in exc.errors(include_url=False)]
        needed = [
            where for (where, _), kind in zip(problems, kinds, strict=True) if kind == "missing"
        ]
        name = message_type.__name__
        if needed:
            raise MagicError(
                f"{name} needs {', '.join(needed)}: `%llmgine {what} {name}({needed[0]}=...)`"
            ) from None
        raise MagicError(f"could not make a {name}: {describe_validation_error(exc)}") from None


def message_class(shell: Any, name: str, base: type) -> type:
    """The class ``name`` of the notebook, which must subclass ``base`` (Command, Event)."""
    value = lookup(shell, name, f"{base.__name__} class")
    if not (isinstance(value, type) and issubclass(value, base)):
        raise MagicError(f"{name} is not a {base.__name__} class")
    return value
