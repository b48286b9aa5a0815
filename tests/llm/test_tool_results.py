"""What a tool gives back reaches the model as text, whatever it returns or raises."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import decimal
import json
import logging
import math
import sys
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, PromptCommand, ScriptedProvider, ToolResultEvent
from llmgine.llm.tool_results import MAX_INT_DIGITS
from llmgine.llm.tool_runner import ToolRunner
from llmgine.llm.types import ToolCall


class Launch(BaseModel):
    name: str
    at: datetime.datetime


@dataclasses.dataclass
class Order:
    id: int
    placed: datetime.date


VALUES: dict[str, Any] = {
    "datetime": {"created": datetime.datetime(2026, 1, 1, 9, 30)},
    "uuid": {"id": uuid.UUID(int=1)},
    "decimal": {"price": decimal.Decimal("9.99")},
    "dataclass": Order(1, datetime.date(2026, 1, 2)),
    "date": datetime.date(2026, 1, 1),
    "model": Launch(name="launch", at=datetime.datetime(2026, 1, 1)),
    "plain": {"a": 1, "b": [1.5, None, True], "é": "ü"},
}


def lookup(kind: str) -> object:
    """Look a record up.

    Args:
        kind: Which record.
    """
    return VALUES[kind]


async def answers(
    bus: MessageBus, tool: Callable[[str], object], kinds: Iterable[str]
) -> dict[str | None, str | None]:
    """What the model reads when ``tool`` is called with each of ``kinds`` (by call id)."""
    runner = ToolRunner(bus, [tool])
    name = tool.__name__
    calls = [ToolCall(id=k, name=name, arguments=json.dumps({"kind": k})) for k in kinds]
    messages = await runner.run_all(calls, "c", uuid.uuid4())
    return {m.tool_call_id: m.content for m in messages}


@pytest.mark.timeout(30)
async def test_a_tool_returning_dates_uuids_decimals_dataclasses_or_models_answers_in_json(
    bus: MessageBus,
) -> None:
    assert await answers(bus, lookup, VALUES) == {
        "datetime": '{"created": "2026-01-01T09:30:00"}',
        "uuid": '{"id": "00000000-0000-0000-0000-000000000001"}',
        "decimal": '{"price": "9.99"}',
        "dataclass": '{"id": 1, "placed": "2026-01-02"}',
        "date": '"2026-01-01"',
        "model": '{"name": "launch", "at": "2026-01-01T00:00:00"}',
        # What JSON held before is written as before: spaced separators, no escapes.
        "plain": '{"a": 1, "b": [1.5, null, true], "é": "ü"}',
    }


@pytest.mark.timeout(30)
async def test_a_prompt_whose_tool_returns_a_datetime_succeeds(bus: MessageBus) -> None:
    provider = ScriptedProvider([ScriptedProvider.call("lookup", kind="model"), "Launched."])
    LLMEngine(bus, provider=provider, tools=[lookup])
    result = await bus.execute(PromptCommand(prompt="when?"))
    assert result.success, result.error
    assert provider.requests[1].messages[-1].content == (
        '{"name": "launch", "at": "2026-01-01T00:00:00"}'
    )


def run_cli(args: str) -> str:
    """Run the report command line.

    Args:
        args: Its arguments.
    """
    parser = argparse.ArgumentParser(prog="report")
    parser.add_argument("--days", type=int)
    return str(parser.parse_args(args.split()))  # an unknown option: SystemExit(2)


async def cli_turn(
    bus: MessageBus, tool: Callable[[str], str], args: str, reply: str
) -> tuple[list[ToolResultEvent], ScriptedProvider]:
    """One prompt whose model runs ``tool`` with ``args``, then answers ``reply``."""
    provider = ScriptedProvider([ScriptedProvider.call(tool.__name__, args=args), reply])
    LLMEngine(bus, provider=provider, tools=[tool])
    results: list[ToolResultEvent] = []
    bus.register_event_handler(ToolResultEvent, results.append)
    result = await bus.execute(PromptCommand(prompt="report"))
    assert result.success and result.result == reply
    await bus.wait_for_events()
    return results, provider


@pytest.mark.timeout(30)
async def test_a_tool_that_exits_like_a_command_line_sends_the_model_an_error(
    bus: MessageBus, capsys: pytest.CaptureFixture[str]
) -> None:
    results, provider = await cli_turn(bus, run_cli, "--weeks 2", "Sorry.")
    expected = "run_cli exited with status 2 (SystemExit): check its arguments"
    assert results[0].error == expected
    assert provider.requests[1].messages[-1].content == f"Error: {expected}"
    assert "unrecognized arguments: --weeks" in capsys.readouterr().err  # argparse's own words


def run_cli_help(args: str) -> str:
    """Run the report command line.

    Args:
        args: Its arguments.
    """
    parser = argparse.ArgumentParser(prog="report", description="Print the weekly report.")
    return str(parser.parse_args(args.split()))  # --help: its text, then SystemExit(0)


def finish(status: str) -> None:
    """End the run.

    Args:
        status: How it ends: "none" (sys.exit()), "zero", or a message.
    """
    sys.exit({"none": None, "zero": 0}.get(status, status))


@pytest.mark.timeout(30)
async def test_a_tool_that_exits_normally_like_help_is_no_error(
    bus: MessageBus, capsys: pytest.CaptureFixture[str]
) -> None:
    results, provider = await cli_turn(bus, run_cli_help, "--help", "Done.")
    assert results[0].error is None
    sent = provider.requests[1].messages[-1].content
    assert sent == "run_cli_help exited (status 0) without a result"
    assert "Print the weekly report." in capsys.readouterr().out  # argparse printed its help


@pytest.mark.timeout(30)
async def test_sys_exit_without_status_is_a_normal_end_and_with_a_message_an_error(
    bus: MessageBus,
) -> None:
    runner = ToolRunner(bus, [finish])
    calls = [ToolCall(id=s, name="finish", arguments=f'{{"status": "{s}"}}') for s in STATUSES]
    messages = await runner.run_all(calls, "c", uuid.uuid4())
    assert [m.content for m in messages] == list(STATUSES.values())


STATUSES = {
    "none": "finish exited (status 0) without a result",
    "zero": "finish exited (status 0) without a result",
    "disk full": "Error: finish exited (SystemExit): disk full",
}


@dataclasses.dataclass
class Reading:
    value: float
    count: Any


NUMERIC: dict[str, Any] = {
    "int64": np.int64(7),
    "bool": np.True_,
    "float64": np.float64(2.5),
    "float32": np.float32(0.5),
    "array": np.arange(3),
    "matrix": np.array([[1.5, 2.0], [3.0, 4.0]]),
    "nested": {"n": np.int64(3), "ok": [np.bool_(False)]},
    "in a dataclass": Reading(1.0, np.int64(4)),
    "series": pd.Series([1, 2], index=["a", "b"]),
    "frame": pd.DataFrame({"city": ["Paris", "Rome"], "temp": [21.5, 25.0]}),
    "timestamp": pd.Timestamp("2026-01-01 09:30"),
    "dated series": pd.Series([1.5], index=[pd.Timestamp("2026-01-02")]),
    "int keys": {np.int64(1): "one", 2: "two", None: "none"},
    "nat": pd.NaT,
    "long double": np.longdouble(1.5),  # its tolist() is a longdouble again
    "complex long double": np.clongdouble(1 + 2j),
    "nanoseconds": np.datetime64("2024-01-02T03:04:05.123456789"),
    "dates": np.array(["2024-01-02", "2024-02-03"], dtype="datetime64[D]"),
    "durations": np.array([5_000_000_000], dtype="timedelta64[ns]"),
}


def numeric(kind: str) -> object:
    """Compute a figure.

    Args:
        kind: Which figure.
    """
    return NUMERIC[kind]


@pytest.mark.timeout(30)
async def test_a_tool_returning_numpy_or_pandas_values_answers_with_their_numbers(
    bus: MessageBus,
) -> None:
    assert await answers(bus, numeric, NUMERIC) == {
        "int64": "7",
        "bool": "true",
        "float64": "2.5",
        "float32": "0.5",
        "array": "[0, 1, 2]",
        "matrix": "[[1.5, 2.0], [3.0, 4.0]]",
        "nested": '{"n": 3, "ok": [false]}',
        "in a dataclass": '{"value": 1.0, "count": 4}',
        "series": '{"a": 1, "b": 2}',
        "frame": '[{"city": "Paris", "temp": 21.5}, {"city": "Rome", "temp": 25.0}]',
        "timestamp": "2026-01-01T09:30:00",  # a string, as the tool's own str result would be
        "dated series": '{"2026-01-02T00:00:00": 1.5}',
        "int keys": '{"1": "one", "2": "two", "null": "none"}',
        "nat": "null",
        "long double": "1.5",
        "complex long double": "np.clongdouble('1+2j')",  # JSON has no complex number
        "nanoseconds": "2024-01-02T03:04:05.123456789",  # ISO text, not nanoseconds since 1970
        "dates": '["2024-01-02", "2024-02-03"]',
        "durations": '["PT5S"]',  # ISO durations, not nanoseconds
    }


NOT_FINITE: dict[str, Any] = {
    "nan": math.nan,
    "inf": {"high": math.inf, "low": -math.inf, "ok": 1.5},
    "numpy nan": np.array([1.0, np.nan]),
    "frame with a gap": pd.DataFrame({"temp": [21.5, None]}),
    "in a dataclass": Reading(math.nan, 1),
    "as a key": {math.nan: "unknown"},  # a key is text: as json.dumps writes it
}


def not_finite(kind: str) -> object:
    """Compute a figure that may be missing.

    Args:
        kind: Which figure.
    """
    return NOT_FINITE[kind]


@pytest.mark.timeout(30)
async def test_nan_and_infinities_reach_the_model_as_json_null(bus: MessageBus) -> None:
    contents = await answers(bus, not_finite, NOT_FINITE)
    assert contents == {
        "nan": "null",
        "inf": '{"high": null, "low": null, "ok": 1.5}',
        "numpy nan": "[1.0, null]",
        "frame with a gap": '[{"temp": 21.5}, {"temp": null}]',
        "in a dataclass": '{"value": null, "count": 1}',
        "as a key": '{"NaN": "unknown"}',
    }
    for text in contents.values():
        assert text is not None
        json.loads(text, parse_constant=pytest.fail)  # strict JSON: no NaN, no Infinity


LONG = {
    "negative": -(10**5000),
    "nested": {"n": 10**5000 + 1, "key": {10**4500: "k"}},
    "too long": 10**MAX_INT_DIGITS,
}


def long_number(kind: str) -> object:
    """Compute a large number.

    Args:
        kind: Which number.
    """
    return LONG[kind]


@pytest.mark.timeout(30)
async def test_an_integer_beyond_the_str_digit_limit_reaches_the_model_as_its_digits(
    bus: MessageBus, caplog: pytest.LogCaptureFixture
) -> None:
    contents = await answers(bus, long_number, LONG)
    assert contents["negative"] == "-1" + "0" * 5000
    assert contents["nested"] == '{"n": 1' + "0" * 4999 + '1, "key": {"1' + "0" * 4500 + '": "k"}}'
    assert (
        contents["too long"] == f"an integer of {MAX_INT_DIGITS + 1} digits, too long to write out"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
