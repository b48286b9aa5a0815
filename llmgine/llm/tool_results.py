"""A tool's result as the JSON text the model reads, and its ``SystemExit`` as a text.

Whatever a tool returns is written as JSON and never raises: numpy scalars and arrays
become numbers and lists, pandas frames their records, series their ``{index: value}``
and timestamps their ISO text; NaN and infinities become ``null`` (JSON has no number
for them; the log writes them so too); an integer too long for ``str`` (Python's
4300-digit limit, which is process-wide) is still written out in full up to
:data:`MAX_INT_DIGITS` digits, and beyond as a text saying how many it has. What pydantic
writes (datetimes, UUIDs, decimals, dataclasses, models) is written as pydantic writes it.
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import logging
import math
import re
import sys
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from llmgine.observability.jsonsafe import json_safe, numpy_plain, safe_repr

__all__ = ["MAX_INT_DIGITS", "exit_text", "tool_content"]

logger = logging.getLogger(__name__)

MAX_INT_DIGITS = 20_000
"""The longest integer written out digit by digit (longer ones cost seconds to convert)."""

_MAX_DEPTH = 64  # as json_safe's: deeper values are written as "<too deep>"
_LOG10_2 = math.log10(2)


def tool_content(value: Any) -> str:
    """A tool's result as JSON text for the model (a string as it is); never raises."""
    plain = _Plain()
    safe = json_safe(plain.walk(value, set(), 0))
    if isinstance(safe, str):
        return plain.numbers[0] if plain.numbers and safe == plain.marker(0) else safe
    try:
        text = json.dumps(safe, ensure_ascii=False, default=to_jsonable_python, allow_nan=False)
    except Exception:  # json_safe kept only what pydantic writes: a last guard
        logger.warning("a tool result could not be written as JSON", exc_info=True)
        return safe_repr(value)
    if not plain.numbers:
        return text
    return plain.pattern().sub(lambda m: plain.numbers[int(m.group(1))], text)


def exit_text(tool_name: str, code: object) -> tuple[str | None, str | None]:
    """What a tool's ``SystemExit(code)`` tells the model: ``(result, error)``, one of them set.

    Status 0 or ``None`` is a normal exit (an argparse ``--help``), not an error.
    """
    if code is None or code == 0:
        return f"{tool_name} exited (status 0) without a result", None
    if isinstance(code, str):  # sys.exit("message"): the message is the error
        return None, f"{tool_name} exited (SystemExit): {code}"
    return (
        None,
        f"{tool_name} exited with status {safe_repr(code)} (SystemExit): check its arguments",
    )


class _Plain:
    """Turns numpy, pandas, non-finite floats and long integers into what JSON holds.

    An integer too long for ``str`` becomes a marker string, replaced by its digits in
    the final text (``json.dumps`` cannot write it).
    """

    def __init__(self) -> None:
        self.numbers: list[str] = []
        self._token = uuid.uuid4().hex

    def marker(self, index: int) -> str:
        return f"\ue000{self._token}:{index}\ue000"

    def pattern(self) -> re.Pattern[str]:
        return re.compile(f'"\ue000{self._token}:(\\d+)\ue000"')

    def walk(self, value: Any, seen: set[int], depth: int) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return str.__str__(value)  # a str subclass (numpy's str_) as a plain str
        if isinstance(value, int):
            return self._int(int(value))
        if isinstance(value, float):
            return float(value) if math.isfinite(value) else None
        root = type(value).__module__.partition(".")[0]
        if root in ("numpy", "pandas"):
            converted = _from_numpy_or_pandas(value, root)
            return value if converted is value else self.walk(converted, seen, depth)
        if depth >= _MAX_DEPTH:
            return value  # json_safe writes it as "<too deep>"
        if isinstance(value, Mapping | list | tuple | set | frozenset | BaseModel) or (
            dataclasses.is_dataclass(value) and not isinstance(value, type)
        ):
            if id(value) in seen:
                return "<cycle>"
            seen.add(id(value))
            try:
                return self._container(value, seen, depth)
            except Exception:  # an odd container (a raising items()): json_safe's repr
                logger.debug("a tool result's container could not be walked", exc_info=True)
                return value
            finally:
                seen.discard(id(value))
        return value  # datetimes, UUIDs, enums...: written by pydantic afterwards

    def _container(self, value: Any, seen: set[int], depth: int) -> Any:
        if isinstance(value, BaseModel):
            value = dict(value)  # its fields, as json_safe reads a model
        elif dataclasses.is_dataclass(value):
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        if isinstance(value, Mapping):
            return {self._key(k): self.walk(v, seen, depth + 1) for k, v in value.items()}
        return [self.walk(item, seen, depth + 1) for item in value]

    def _key(self, key: Any) -> Any:
        if isinstance(key, str):
            return str.__str__(key)
        if isinstance(key, float) and not math.isfinite(key):
            return json.dumps(key)  # a key is text: NaN, Infinity as json.dumps writes them
        plain = self.walk(key, set(), _MAX_DEPTH)  # a scalar made plain; a tuple stays
        if isinstance(plain, str) and plain.startswith(f"\ue000{self._token}:"):
            return self.numbers.pop()  # a long integer key: its digits (a key is text)
        if isinstance(plain, bool) or plain is None:
            return json.dumps(plain)  # as json.dumps writes such keys: true, null
        if isinstance(plain, int | float):
            return repr(plain)
        if isinstance(plain, str):
            return plain
        try:  # a datetime or UUID key: its JSON text
            text = to_jsonable_python(plain)
        except Exception:
            logger.debug("a tool result's key is written as its repr", exc_info=True)
            return safe_repr(plain)
        return text if isinstance(text, str) else safe_repr(plain)

    def _int(self, value: int) -> int | str:
        limit = sys.get_int_max_str_digits()
        if not limit or value.bit_length() * _LOG10_2 < limit - 1:
            return value
        digits = _digit_count(value)
        if limit and digits <= limit:
            return value
        if digits > MAX_INT_DIGITS:
            return f"an integer of {digits} digits, too long to write out"
        self.numbers.append(str(decimal.Decimal(value)))  # no str-digits limit there
        return self.marker(len(self.numbers) - 1)


def _digit_count(value: int) -> int:
    """How many decimal digits ``value`` has, without writing it out."""
    size = abs(value)
    if size == 0:
        return 1
    estimate = int((size.bit_length() - 1) * _LOG10_2) + 1  # exact, or one short
    return estimate + 1 if size >= 10**estimate else estimate


def _from_numpy_or_pandas(value: Any, root: str) -> Any:
    """A numpy or pandas value as plain Python (``value`` itself when not known).

    Found by module name: neither library is imported for a result that holds neither.
    """
    if root == "pandas":
        import pandas as pd  # already imported: the value is one of its objects

        if isinstance(value, pd.DataFrame):
            return value.to_dict(orient="records")
        if isinstance(value, pd.Series):
            return value.to_dict()
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
        if pd.api.types.is_scalar(value) and pd.isna(value):
            return None  # NaT, NA
    return numpy_plain(value)  # numpy scalars and arrays; a pandas Index
