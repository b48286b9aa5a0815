"""Never raise for a value: what JSON cannot hold is written as a safe text."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from llmgine import LLMEngine, ScriptedProvider
from llmgine.bus import MessageBus
from llmgine.messages import Command, Event
from llmgine.observability import decode


class Unrepresentable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def cycle() -> dict[str, Any]:
    d: dict[str, Any] = {"name": "loop"}
    d["self"] = d
    return d


ODD_NAME = os.fsdecode(b"caf\xe9.txt")  # what Linux returns for a Latin-1 file name
ODD_VALUES: dict[str, Any] = {
    "surrogates": ODD_NAME,
    "bytes": b"\xff\x00raw",
    "cycle": cycle(),
    "bad_repr": Unrepresentable(),
    "nested": {"files": [ODD_NAME, b"\x80"], ODD_NAME: 1},
}


class CarriedEvent(Event):
    value: Any


class ReturnCommand(Command):
    value: Any = None


def read(path: Path | None) -> list[dict[str, Any]]:
    assert path is not None
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("kind", list(ODD_VALUES))
async def test_events_commands_and_results_with_odd_values_are_written(
    tmp_path: Path, kind: str
) -> None:
    value = ODD_VALUES[kind]
    bus = MessageBus(log_dir=tmp_path, log_filename="odd.jsonl", enable_console_traces=False)
    seen: list[Any] = []
    bus.register_event_handler(CarriedEvent, lambda e: seen.append(e.value))
    bus.register_command_handler(ReturnCommand, lambda c: c.value)
    async with bus:
        await bus.publish(CarriedEvent(value=value, metadata={"odd": value}))
        result = await bus.execute(ReturnCommand(value=value, session_id=ODD_NAME))
    assert len(seen) == 1 and seen[0] is value
    assert result.success and result.result is value
    lines = read(bus.log_path)
    types = [line["type"] for line in lines]
    assert types.count("CarriedEvent") == 1
    assert types.count("ReturnCommand") == 1
    assert types.count("CommandResultEvent") == 1
    carried = next(line for line in lines if line["type"] == "CarriedEvent")
    assert carried["data"]["value"] != "" and carried["metadata"]["odd"] is not None
    assert bus.log_path is not None
    for raw in bus.log_path.read_bytes().splitlines():
        decode(raw)  # every line reads back with the codec


class FailCommand(Command):
    pass


async def test_an_exception_whose_str_raises_still_gives_a_failed_result(tmp_path: Path) -> None:
    bus = MessageBus(log_dir=tmp_path, log_filename="odd.jsonl", enable_console_traces=False)

    def fail(command: FailCommand) -> None:
        raise UnprintableError()

    bus.register_command_handler(FailCommand, fail)
    async with bus:
        result = await bus.execute(FailCommand())
    assert not result.success
    assert result.error_type == "UnprintableError"
    assert "str() failed" in (result.error or "")
    errors = [line for line in read(bus.log_path) if line["type"] == "CommandErrorEvent"]
    assert len(errors) == 1 and "UnprintableError" in errors[0]["data"]["traceback"]


async def test_a_tool_returning_an_odd_file_name_does_not_fail_the_prompt(
    tmp_path: Path,
) -> None:
    bus = MessageBus(log_dir=tmp_path, log_filename="tool.jsonl", enable_console_traces=False)

    def list_files() -> list[str]:
        """List the files here."""
        return [ODD_NAME, "plain.txt"]

    provider = ScriptedProvider([ScriptedProvider.call("list_files"), "There are two files."])
    engine = LLMEngine(bus, provider=provider, tools=[list_files])
    async with bus:
        reply = await engine.chat("What files are there?")
    assert reply == "There are two files."
    results = [line for line in read(bus.log_path) if line["type"] == "ToolResultEvent"]
    assert len(results) == 1 and "plain.txt" in json.dumps(results[0]["data"])
