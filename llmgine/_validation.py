"""The one way a pydantic ``ValidationError`` becomes text for a person or a model."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["describe_validation_error", "validation_problems"]


def validation_problems(exc: ValidationError, *, whole: str = "") -> list[tuple[str, str]]:
    """Each problem of ``exc`` as ``(where, message)``.

    ``where`` is the field's dotted path (``"address.city"``, ``"items.0"``), or
    ``whole`` for a problem with the value as a whole.
    """
    return [
        (".".join(str(part) for part in error["loc"]) or whole, str(error["msg"]))
        for error in exc.errors(include_url=False)
    ]


def describe_validation_error(exc: ValidationError, *, whole: str = "") -> str:
    """``exc`` as one line: ``"where: message; where: message"``.

    Args:
        exc: The error.
        whole: The name of the value as a whole (``"arguments"``), for problems not in a
            field; with ``""`` such a problem is its message alone.
    """
    return "; ".join(
        f"{where}: {message}" if where else message
        for where, message in validation_problems(exc, whole=whole)
    )
