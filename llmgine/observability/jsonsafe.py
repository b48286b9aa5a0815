"""Values JSON cannot hold, made safe to write: the log never raises for a value.

A message may carry anything: a file name with surrogate escapes (as Linux returns
for names that are not UTF-8), raw bytes, a dict that contains itself, an object
whose ``repr`` raises. :func:`json_safe` turns such a value into one JSON can hold,
keeping whatever is representable and writing the rest as a safe ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_json

__all__ = ["json_safe", "numpy_plain", "plain_or_repr", "safe_repr", "safe_str"]

_MAX_DEPTH = 64


def _clean(text: str) -> str:
    """Return ``text`` with lone surrogates written as backslash escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def safe_repr(value: object) -> str:
    """Return ``repr(value)``, or a placeholder naming its type when ``repr`` raises."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__qualname__} object: repr() failed>"
    return _clean(text) if isinstance(text, str) else f"<{type(value).__qualname__} object>"


MAX_LOGGED_ELEMENTS = 10_000
"""A numpy array larger than this is logged as its (summarized) repr, not element by element."""


def plain_or_repr(value: object) -> object:
    """What the log writes for a value pydantic cannot serialize (its ``fallback``).

    numpy scalars and arrays become their Python numbers and lists, a pandas
    ``Timestamp`` its ISO text and pandas' missing values ``None`` (so a notebook's
    numbers stay numbers in the log); anything else its safe ``repr``. Neither
    library is imported: a value is known by its type's module.
    """
    module = type(value).__module__.partition(".")[0]
    try:
        if module == "numpy" and hasattr(value, "tolist"):
            if getattr(value, "size", 1) > MAX_LOGGED_ELEMENTS:
                return safe_repr(value)  # numpy's own summary, not megabytes of numbers
            plain = numpy_plain(value)
            if plain is not value:
                return plain
        if module == "pandas":
            if hasattr(value, "isoformat") and not _is_missing(value):
                return value.isoformat()
            if _is_missing(value):
                return None
    except Exception:  # a broken value: its repr, as for any other
        pass
    return safe_repr(value)


def numpy_plain(value: Any) -> Any:
    """A numpy value (or anything with ``tolist``) as plain Python; ``value`` when it cannot be.

    A ``datetime64`` becomes ISO text and a ``timedelta64`` a ``timedelta`` (not
    nanoseconds), a longdouble a float; a complex number stays as it is (JSON has none).
    """
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    try:
        if kind == "M":
            return value.astype(str).tolist()
        if kind == "m":
            return value.astype("timedelta64[us]").tolist()
        plain = value.tolist()
        if type(plain).__module__.partition(".")[0] != "numpy":
            return plain
        if kind == "f":  # a longdouble, whose tolist() is a longdouble again
            return float(value)
    except Exception:  # a broken value: the caller writes it as it can
        pass
    return value


def _is_missing(value: object) -> bool:
    """Whether ``value`` is pandas' ``NA`` or ``NaT`` (both are unequal to themselves)."""
    try:
        return type(value).__name__ in {"NAType", "NaTType"}
    except Exception:
        return False


def safe_str(value: object) -> str:
    """Return ``str(value)`` (e.g. an exception's message), or a placeholder when it raises."""
    try:
        text = str(value)
    except Exception:
        return f"<{type(value).__qualname__}: str() failed>"
    return _clean(text) if isinstance(text, str) else safe_repr(value)


def json_safe(value: Any) -> Any:
    """Return ``value`` with everything JSON cannot hold replaced by a safe text.

    Strings lose lone surrogates (written as backslash escapes), containers are walked
    (a container met again inside itself becomes ``"<cycle>"``), models become
    dicts of their fields, and any other value that does not serialize is written
    as its safe ``repr``.
    """
    return _walk(value, set(), 0)


def _walk(value: Any, seen: set[int], depth: int) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _clean(value)
    if depth >= _MAX_DEPTH:
        return "<too deep>"
    if isinstance(value, Mapping | list | tuple | set | frozenset | BaseModel):
        key = id(value)
        if key in seen:
            return "<cycle>"
        seen.add(key)
        try:
            if isinstance(value, BaseModel):
                value = dict(value)
            if isinstance(value, Mapping):
                return {
                    _clean(k) if isinstance(k, str) else safe_repr(k): _walk(v, seen, depth + 1)
                    for k, v in value.items()
                }
            return [_walk(item, seen, depth + 1) for item in value]
        except Exception:
            return safe_repr(value)
        finally:
            seen.discard(key)
    try:
        to_json(value)  # datetimes, UUIDs, enums, dataclasses... keep what serializes as it is
    except Exception:
        return safe_repr(value)
    return value
