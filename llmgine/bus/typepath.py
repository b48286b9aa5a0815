"""A message class named across processes (``module:QualName``), and found again."""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

from llmgine.errors import ConfigurationError
from llmgine.messages.base import Message

__all__ = ["class_at", "type_path"]

M = TypeVar("M", bound=Message)


def type_path(cls: type[Message]) -> str:
    """``module:QualName`` of a message class."""
    return f"{cls.__module__}:{cls.__qualname__}"


def class_at(path: str, base: type[M]) -> type[M]:
    """The class ``path`` names (it must be a subclass of ``base``), imported if need be.

    Raises:
        ConfigurationError: The class cannot be imported here, or is not a ``base``.
    """
    module, _, qualname = path.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"{path} cannot be imported in this process ({exc}); import the module that "
            "defines it where the message is run."
        ) from exc
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ConfigurationError(f"{path} is not a {base.__name__}.")
    return found
