"""Dead letters on the shared bus: kept in a Redis stream, redriven from another process."""

from __future__ import annotations

from typing import Any

import pytest

from llmgine.bus import MessageBus
from llmgine.bus.policies import DeadLetters
from llmgine.bus.remote import RedisServer
from llmgine.messages import Command

pytestmark = pytest.mark.timeout(60)


class ImportCommand(Command):
    path: str


async def test_a_dead_letter_kept_by_one_process_is_redriven_by_another(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    keeper = MessageBus(log_dir=None, enable_console_traces=False)
    await keeper.connect(redis_server.url, namespace, heartbeat=0.2)
    other = MessageBus(log_dir=None, enable_console_traces=False)
    await other.connect(redis_server.url, namespace, heartbeat=0.2)
    try:

        def broken(command: ImportCommand) -> None:
            raise FileNotFoundError(command.path)

        keeper.register_command_handler(ImportCommand, broken)
        keeper.add_middleware(DeadLetters())
        failed = await keeper.execute(ImportCommand(path="data.csv"))
        assert not failed.success
        [letter] = keeper.dead_letters
        assert await client.xlen(f"{namespace}:dead_letters") == 1

        imported: list[str] = []
        other.register_command_handler(ImportCommand, lambda c: imported.append(c.path) or "ok")
        other.add_middleware(DeadLetters())
        assert other.dead_letters == []  # not kept here: read from Redis
        again = await other.redrive(letter.id)
        assert again.success and again.result == "ok"
        assert again.metadata["redrive_of"] == letter.id
        assert imported == ["data.csv"]
    finally:
        await other.stop()
        await keeper.stop()
