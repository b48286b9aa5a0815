"""numpy and pandas values in a message: the log keeps them as numbers, lists and times."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from llmgine.messages import Event
from llmgine.observability.codec import decode, encode


class ComputedEvent(Event):
    value: Any = None


def test_numpy_and_pandas_values_are_logged_as_json_numbers_lists_and_nulls() -> None:
    cases: list[tuple[Any, Any]] = [
        (np.int64(7), 7),
        (np.float32(0.5), 0.5),
        (np.bool_(True), True),
        (np.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]]),
        (np.array([np.nan, 1.0]), [None, 1.0]),  # NaN is no JSON number: null, as elsewhere
        ({"rows": np.int32(3), "mean": np.float64(2.5)}, {"rows": 3, "mean": 2.5}),
        (pd.NA, None),
        (np.datetime64("2024-01-02T03:04:05.123456789"), "2024-01-02T03:04:05.123456789"),
        (np.array(["2024-01-02"], dtype="datetime64[D]"), ["2024-01-02"]),
        (np.array([5_000_000_000], dtype="timedelta64[ns]"), ["PT5S"]),  # not nanoseconds
        (np.longdouble(1.5), 1.5),  # its tolist() is a longdouble again
    ]
    for value, logged in cases:
        line = encode("event", ComputedEvent(value=value), None)
        assert decode(line).data == {"value": logged}, value


def test_a_value_neither_pydantic_nor_numpy_can_write_is_still_its_repr() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    line = encode("event", ComputedEvent(value=Opaque()), None)
    assert decode(line).data == {"value": "<opaque>"}


def test_a_large_array_is_logged_as_numpys_summary_not_element_by_element() -> None:
    line = encode("event", ComputedEvent(value=np.arange(1_000_000.0)), None)
    assert len(line) < 2_000
    assert "..." in decode(line).data["value"]


def test_a_number_json_cannot_hold_is_logged_as_its_repr() -> None:
    line = encode("event", ComputedEvent(value=np.clongdouble(1 + 2j)), None)
    assert "1+2j" in decode(line).data["value"]
