"""What a tool gives back reaches the model as text, whatever it returns or raises."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import decimal
import uuid
from typing import Any

import pytest
from pydantic import BaseModel

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, PromptCommand, ScriptedProvider, ToolResultEvent
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


@pytest.mark.timeout(30)
async def test_a_tool_returning_dates_uuids_decimals_dataclasses_or_models_answers_in_json(
    bus: MessageBus,
) -> None:
    runner = ToolRunner(bus, [lookup])
    calls = [ToolCall(id=k, name="lookup", arguments=f'{{"kind": "{k}"}}') for k in VALUES]
    messages = await runner.run_all(calls, "c", uuid.uuid4())
    assert {m.tool_call_id: m.content for m in messages} == {
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


@pytest.mark.timeout(30)
async def test_a_tool_that_exits_like_a_command_line_sends_the_model_an_error(
    bus: MessageBus, capsys: pytest.CaptureFixture[str]
) -> None:
    provider = ScriptedProvider([ScriptedProvider.call("run_cli", args="--weeks 2"), "Sorry."])
    LLMEngine(bus, provider=provider, tools=[run_cli])
    results: list[ToolResultEvent] = []
    bus.register_event_handler(ToolResultEvent, results.append)
    result = await bus.execute(PromptCommand(prompt="report"))
    assert result.success and result.result == "Sorry."
    await bus.wait_for_events()
    expected = "run_cli exited with status 2 (SystemExit): check its arguments"
    assert results[0].error == expected
    assert provider.requests[1].messages[-1].content == f"Error: {expected}"
    assert "unrecognized arguments: --weeks" in capsys.readouterr().err  # argparse's own words
