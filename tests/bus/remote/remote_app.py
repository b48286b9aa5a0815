"""The application the tests' worker processes serve (python -m llmgine worker remote_app:setup)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from llmgine.bus import MessageBus
from llmgine.messages import Command, Event


class AddCommand(Command):
    a: int
    b: int


class CrashCommand(Command):
    reason: str


class SlowCommand(Command):
    seconds: float
    runs_dir: str


class WhoAmICommand(Command):
    pass


class PingedEvent(Event):
    n: int


class EchoedEvent(Event):
    n: int
    worker: int


class SlowStartedEvent(Event):
    worker: int


def setup(bus: MessageBus) -> None:
    async def add(command: AddCommand) -> int:
        return command.a + command.b

    def crash(command: CrashCommand) -> None:
        raise ValueError(command.reason)

    async def slow(command: SlowCommand) -> int:
        await bus.publish(SlowStartedEvent(worker=os.getpid()))
        await asyncio.sleep(command.seconds)
        # One file per completed run: the tests count them.
        Path(command.runs_dir, f"{command.id}.{os.getpid()}").touch()  # noqa: ASYNC240
        return os.getpid()

    async def echo(event: PingedEvent) -> None:
        await bus.publish(EchoedEvent(n=event.n, worker=os.getpid()))

    bus.register_command_handler(AddCommand, add)
    bus.register_command_handler(CrashCommand, crash)
    bus.register_command_handler(SlowCommand, slow)
    bus.register_command_handler(WhoAmICommand, lambda command: os.getpid())
    bus.register_event_handler(PingedEvent, echo)


def setup_engine(bus: MessageBus) -> None:
    """A worker holding the model: an offline LLMEngine."""
    from llmgine.llm import LLMEngine

    LLMEngine(bus, model="offline")
