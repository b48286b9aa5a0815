"""The faults of the shared bus's parts are llmgine errors, each also the builtin it resembles."""

from __future__ import annotations

import socket

import pytest

from llmgine.bus.remote import RedisServer
from llmgine.bus.remote.wire import load_message
from llmgine.errors import LogFormatError, RedisServerError
from llmgine.messages import Command


class SomeCommand(Command):
    pass


@pytest.mark.timeout(60)
def test_a_redis_server_that_cannot_start_is_a_redis_server_error() -> None:
    with socket.socket() as listener:  # the port is taken: redis-server exits at start
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        server = RedisServer(port=listener.getsockname()[1])
        try:
            with pytest.raises(RedisServerError, match="exited at start") as caught:
                server.start(timeout=30)
        finally:
            server.close()
    assert isinstance(caught.value, RuntimeError)


def test_a_line_that_is_not_an_envelope_is_a_log_format_error() -> None:
    with pytest.raises(LogFormatError, match="Not an llmgine envelope") as caught:
        load_message(SomeCommand, b'{"data": {}}')
    assert isinstance(caught.value, ValueError)
