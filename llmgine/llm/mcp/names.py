"""Tool names the model's API accepts, made from the names an MCP server gives.

The OpenAI API takes a function name of 1 to 64 characters from ``[a-zA-Z0-9_-]``,
unique within a request. An MCP server may name a tool ``get time``, with a newline,
with 100 characters or twice. Such a name is renamed, the same way every time (so a
re-run notebook offers the same names), and the server is still called with its own
name; a name listed twice by one server is refused (the server could not tell the
two apart).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

__all__ = ["MAX_NAME_LENGTH", "assign_names", "fit_name", "is_valid_name"]

MAX_NAME_LENGTH = 64
"""The longest function name the OpenAI API takes."""

_VALID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INVALID_RUN = re.compile(r"[^A-Za-z0-9_-]+")


def is_valid_name(name: str) -> bool:
    """Whether the OpenAI API takes ``name`` as a function name."""
    return _VALID.fullmatch(name) is not None


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def fit_name(name: str) -> str:
    """Return ``name`` if it is valid, else a valid name made from it, deterministically.

    Runs of other characters become ``_``; a name still too long (or empty) keeps
    its start and ends with 8 hex digits of a hash of the original.
    """
    if is_valid_name(name):
        return name
    cleaned = _INVALID_RUN.sub("_", name).strip("_")
    if not cleaned:
        return f"tool_{_digest(name)}"
    if len(cleaned) > MAX_NAME_LENGTH:
        return f"{cleaned[: MAX_NAME_LENGTH - 9]}_{_digest(name)}"
    return cleaned


def assign_names(names: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Give each of one server's tool names a valid name of its own.

    Returns:
        ``(offered, refused)``: ``offered`` maps each name offered to the model to
        the server's own name (equal when nothing had to change); ``refused`` maps
        a name the server listed more than once to why it is left out.
    """
    offered: dict[str, str] = {}
    refused: dict[str, str] = {}
    seen: set[str] = set()
    for name in names:
        if name in seen:
            refused[name] = "the server lists this name more than once"
            continue
        seen.add(name)
        fitted = fit_name(name)
        if fitted in offered:  # two names that differ only in characters the API rejects
            fitted = f"{fitted[: MAX_NAME_LENGTH - 9]}_{_digest(name)}"
        offered[fitted] = name
    for name in refused:  # every copy goes: which one the server would run is unknown
        for key in [k for k, v in offered.items() if v == name]:
            del offered[key]
    return offered, refused
