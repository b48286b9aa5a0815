"""``map``'s result: one row per input row, on the input's index, ready for ``df.join``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from llmgine.batch.outcome import RowOutcome

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RESULT_COLUMNS", "output_columns", "result_frame"]

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


def output_columns(
    output_type: type[BaseModel] | None, frame_columns: Iterable[Any]
) -> dict[str, str]:
    """The output's columns: ``{"output": "output"}``, or each field of ``output_type``.

    A field whose name is a column of the input frame (or one of :data:`RESULT_COLUMNS`)
    becomes ``output_<name>``, so ``df.join(result)`` never meets two columns of one name.

    Returns:
        Each field's name (``"output"`` without an output type) to its column's name.
    """
    taken = {str(c) for c in frame_columns} | set(RESULT_COLUMNS)
    if output_type is None:
        return {"output": "output_text" if "output" in taken else "output"}
    columns = {}
    for field in output_type.model_fields:
        name = field
        while name in taken:
            name = f"output_{name}"
        taken.add(name)
        columns[field] = name
    return columns


def result_frame(
    index: pd.Index[Any],
    outcomes: Sequence[RowOutcome | None],
    columns: dict[str, str],
    *,
    structured: bool,
) -> pd.DataFrame:
    """The frame of ``outcomes`` (by position; ``None``: a row with no outcome yet).

    Text columns (``output``, ``error``, ``model``, ``trace_id``) are ``object`` columns
    holding ``None`` where there is no value, so ``result.error.isna()`` finds the rows
    that succeeded and ``result.error[i] is None`` holds.

    Args:
        index: The input frame's index (kept as it is: MultiIndex, repeated labels).
        outcomes: One per row, in the input's order.
        columns: From :func:`output_columns`.
        structured: Whether outputs are models whose fields become ``columns``.
    """
    import pandas as pd

    def column(values: list[Any], dtype: str | type = object) -> pd.Series[Any]:
        # Object columns stay object (None, not NaN: pandas 3 would infer ``str``).
        return pd.Series(values, dtype=dtype)

    rows = [o if o is not None else RowOutcome(i) for i, o in enumerate(outcomes)]
    data: dict[str, Any] = {}
    if structured:
        dumps = [o.output.model_dump() if isinstance(o.output, BaseModel) else {} for o in rows]
        for field, name in columns.items():
            data[name] = column([d.get(field) for d in dumps])
    else:
        (name,) = columns.values()
        data[name] = column([o.output for o in rows])
    data["error"] = column([o.error for o in rows])
    data["input_tokens"] = column([o.input_tokens for o in rows], "Int64")
    data["output_tokens"] = column([o.output_tokens for o in rows], "Int64")
    data["cost_usd"] = column([_nan(o.cost_usd) for o in rows], "float64")
    data["latency_ms"] = column([_nan(o.latency_ms) for o in rows], "float64")
    data["cached"] = column([o.cached for o in rows], "boolean")
    data["model"] = column([o.model for o in rows])
    data["trace_id"] = column([o.trace_id for o in rows])
    frame = pd.DataFrame(data)  # by position: a repeated label must not align with itself
    frame.index = index
    return frame


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)
