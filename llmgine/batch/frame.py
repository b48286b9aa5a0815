"""``map``'s result: one row per input row, on the input's index, ready for ``df.join``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from llmgine.batch.outcome import RowOutcome

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FIELD", "RESULT_COLUMNS", "output_columns", "result_frame"]

RESULT_COLUMNS = (
    "error",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "cached",
    "model",
    "trace_id",
)
"""The columns after the output's, in order."""


FIELD = "output."
"""How :func:`output_columns` keys a field of the output type (``output.label``)."""


def output_columns(
    output_type: type[BaseModel] | None, frame_columns: Iterable[Any]
) -> dict[str, str]:
    """The name of each column of the result, so ``df.join(result)`` always works.

    Keys are the columns as documented: ``"output"`` (or ``"output.<field>"`` for each
    field of ``output_type``) and :data:`RESULT_COLUMNS`. A field whose name the input
    frame has already, or one of :data:`RESULT_COLUMNS` (a field named ``model``,
    ``error``, ``cost_usd``...), becomes ``output_<name>``; ``output`` or a result
    column the input frame has already becomes ``llm_<name>`` (``llm_model`` beside a
    frame's own ``model``). ``result.attrs["llmgine.map.columns"]`` keeps this mapping
    by the documented names (a field by its own name, left out when it is one of
    :data:`RESULT_COLUMNS`); ``result.attrs["llmgine.map.fields"]`` maps every field
    of ``output_type`` to its column.
    """
    given = list(frame_columns)
    frame = {str(c) for c in given}
    # A MultiIndex column ("output", "") is what this result's "output" becomes beside it.
    frame |= {str(c[0]) for c in given if isinstance(c, tuple) and not any(c[1:])}
    used: set[str] = set()

    def free(name: str, prefix: str, also: frozenset[str]) -> str:
        while name in frame or name in used or name in also:
            name = f"{prefix}{name}"
        used.add(name)
        return name

    columns: dict[str, str] = {}
    if output_type is None:
        columns["output"] = free("output", "llm_", frozenset())
    else:
        for field in output_type.model_fields:
            columns[f"{FIELD}{field}"] = free(field, "output_", frozenset(RESULT_COLUMNS))
    for name in RESULT_COLUMNS:
        columns[name] = free(name, "llm_", frozenset())
    return columns


def _documented(columns: dict[str, str]) -> dict[str, str]:
    """``attrs["llmgine.map.columns"]``: a field by its own name, unless it is a result's."""
    shown: dict[str, str] = {}
    for key, column in columns.items():
        name = key.removeprefix(FIELD)
        if key == name or name not in RESULT_COLUMNS:
            shown[name] = column
    return shown


def result_frame(
    index: pd.Index[Any],
    outcomes: Sequence[RowOutcome | None],
    columns: dict[str, str],
    *,
    structured: bool,
    levels: int = 1,
) -> pd.DataFrame:
    """The frame of ``outcomes`` (by position; ``None``: a row with no outcome yet).

    Text columns (``output``, ``error``, ``model``, ``trace_id``) are ``object`` columns
    holding ``None`` where there is no value, so ``result.error.isna()`` finds the rows
    that succeeded and ``result.error[i] is None`` holds. A field of the output type
    whose values are all bools, ints or numbers is a ``boolean``, ``Int64`` or
    ``Float64`` column (a failed row ``<NA>``), as ``input_tokens`` and ``cached`` are.

    Args:
        index: The input frame's index (kept as it is: MultiIndex, repeated labels).
        outcomes: One per row, in the input's order.
        columns: From :func:`output_columns`: each documented column's name here.
        structured: Whether outputs are models whose fields become columns.
        levels: The input frame's column levels: with more than one, each column is
            ``(name, "", ...)``, so ``df.join(result)`` works on MultiIndex columns.
    """
    import pandas as pd

    def column(values: list[Any], dtype: str | type = object) -> pd.Series[Any]:
        # Object columns stay object (None, not NaN: pandas 3 would infer ``str``).
        return pd.Series(values, dtype=dtype)

    rows = [o if o is not None else RowOutcome(i) for i, o in enumerate(outcomes)]
    data: dict[str, Any] = {}
    fields = {k.removeprefix(FIELD): c for k, c in columns.items() if k.startswith(FIELD)}
    if structured:
        dumps = [o.output.model_dump() if isinstance(o.output, BaseModel) else {} for o in rows]
        for field, name in fields.items():
            data[name] = _typed([d.get(field) for d in dumps])
    else:
        data[columns["output"]] = column([o.output for o in rows])
    data[columns["error"]] = column([o.error for o in rows])
    data[columns["input_tokens"]] = column([o.input_tokens for o in rows], "Int64")
    data[columns["output_tokens"]] = column([o.output_tokens for o in rows], "Int64")
    data[columns["cost_usd"]] = column([_nan(o.cost_usd) for o in rows], "float64")
    data[columns["latency_ms"]] = column([_nan(o.latency_ms) for o in rows], "float64")
    data[columns["cached"]] = column([o.cached for o in rows], "boolean")
    data[columns["model"]] = column([o.model for o in rows])
    data[columns["trace_id"]] = column([o.trace_id for o in rows])
    frame = pd.DataFrame(data)  # by position: a repeated label must not align with itself
    frame.index = index
    if levels > 1:
        pad = ("",) * (levels - 1)
        frame.columns = pd.MultiIndex.from_tuples([(c, *pad) for c in frame.columns])
    frame.attrs["llmgine.map.columns"] = _documented(columns)
    frame.attrs["llmgine.map.fields"] = fields
    return frame


def _typed(values: list[Any]) -> pd.Series[Any]:
    """A field's column, typed when every value fits one nullable dtype.

    ``boolean``, ``Int64`` or ``Float64`` (a failed row ``<NA>``) when every value is a
    bool, an int, or a number; else ``object`` (``None`` where there is no value).
    """
    import pandas as pd

    kinds = {type(v) for v in values if v is not None}
    dtype: str | type = object
    if kinds == {bool}:
        dtype = "boolean"
    elif kinds == {int}:
        dtype = "Int64"
    elif kinds and kinds <= {int, float}:
        dtype = "Float64"
    if dtype is not object:
        try:
            return pd.Series(values, dtype=dtype)
        except (TypeError, ValueError, OverflowError):  # an int beyond 64 bits: as it is
            pass
    return pd.Series(values, dtype=object)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)
