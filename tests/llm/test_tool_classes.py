"""A class is not a tool: its fields (a Command's id, metadata, ...) would reach the model."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from llmgine import Command, LLMEngine, MessageBus, Tool, tool


class TransferCommand(Command):
    amount: int


class City(BaseModel):
    name: str


class Plain:
    def __init__(self, x: int) -> None:
        self.x = x


@pytest.mark.parametrize("cls", [TransferCommand, City, Plain])
async def test_registering_a_class_as_a_tool_is_refused_asking_for_a_function(
    bus: MessageBus, cls: type
) -> None:
    engine = LLMEngine(bus, model="offline")
    with pytest.raises(TypeError, match=f"not the class {cls.__name__}: pass a function"):
        engine.register_tool(cls)
    with pytest.raises(TypeError, match="pass a function"):
        Tool(cls)
    with pytest.raises(TypeError, match="pass a function"):
        tool(cls)
    assert len(engine.tools) == 0


async def test_a_function_building_the_command_is_the_tool_instead(bus: MessageBus) -> None:
    def transfer(amount: int) -> str:
        """Transfer money.

        Args:
            amount: In cents.
        """
        return TransferCommand(amount=amount).model_dump_json()

    registered = LLMEngine(bus, model="offline").register_tool(transfer)
    assert list(registered.parameters["properties"]) == ["amount"]  # no id, no metadata
