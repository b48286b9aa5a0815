"""The application the tests' worker processes serve (python -m llmgine worker remote_app:setup)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
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


class BlockingCommand(Command):
    """Handled by a sync handler that blocks its thread for ``seconds``."""

    seconds: float
    runs_dir: str


class BlockLoopCommand(Command):
    """Handled by an async handler that blocks the worker's event loop for ``seconds``."""

    seconds: float
    runs_dir: str


class RaiseCommand(Command):
    """Its handler raises a BaseException of the kind named (not an Exception)."""

    kind: str


class ExitCommand(Command):
    """Its handler ends the worker process at once, as a crash does."""


if os.environ.get("REMOTE_APP_SKEW"):

    class ReportCommand(Command):  # the worker's newer version: a field added
        path: str
        pages: int

else:

    class ReportCommand(Command):  # type: ignore[no-redef]
        path: str


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

    def block(command: BlockingCommand) -> int:
        time.sleep(command.seconds)  # a sync handler: blocks its thread, not the loop
        Path(command.runs_dir, uuid.uuid4().hex).touch()
        return os.getpid()

    async def raise_it(command: RaiseCommand) -> None:
        kinds: dict[str, type[BaseException]] = {
            "CancelledError": asyncio.CancelledError,
            "SystemExit": SystemExit,
            "KeyboardInterrupt": KeyboardInterrupt,
            "GeneratorExit": GeneratorExit,
        }
        raise kinds[command.kind]("raised by the handler")

    def exit_now(command: ExitCommand) -> None:
        sys.stdout.flush()
        os._exit(3)

    async def block_loop(command: BlockLoopCommand) -> int:
        time.sleep(command.seconds)  # noqa: ASYNC251 -- the mistake under test
        Path(command.runs_dir, uuid.uuid4().hex).touch()  # noqa: ASYNC240
        return os.getpid()

    bus.register_command_handler(BlockingCommand, block)
    bus.register_command_handler(BlockLoopCommand, block_loop)
    bus.register_command_handler(RaiseCommand, raise_it)
    bus.register_command_handler(ExitCommand, exit_now)
    bus.register_command_handler(ReportCommand, lambda command: command.path)
    bus.register_event_handler(PingedEvent, echo)


def setup_engine(bus: MessageBus) -> None:
    """A worker holding the model: an offline LLMEngine."""
    from llmgine.llm import LLMEngine

    LLMEngine(bus, model="offline")
