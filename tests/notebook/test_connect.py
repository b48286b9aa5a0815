"""%llmgine connect: the notebook's default bus joins a shared bus on a real Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import CapturedIO, capture_output

from llmgine import Command, CommandResult, MessageBus
from llmgine.bus.remote import RedisServer
from llmgine.notebook import MagicError, get_bus, run_sync


@pytest.fixture
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


@pytest.mark.timeout(120)
def test_connect_joins_the_shared_bus_and_says_where(
    shell: InteractiveShell, redis_url: str
) -> None:
    note = shell.run_line_magic("llmgine", f"connect {redis_url} --namespace nb")
    assert repr(note) == f"llmgine bus connected to `{redis_url}` (namespace `nb`)"
    remote = get_bus().remote
    assert remote is not None
    assert remote.keys.namespace == "nb"


@pytest.mark.timeout(120)
def test_connect_to_no_server_is_one_readable_error_without_the_password(
    shell: InteractiveShell,
) -> None:
    with pytest.raises(MagicError, match="is the server running") as info:
        shell.run_line_magic("llmgine", "connect redis://:hunter2@127.0.0.1:1/0")
    assert "hunter2" not in str(info.value)


@pytest.mark.timeout(120)
def test_a_failed_connect_keeps_the_shared_bus_joined_before(
    shell: InteractiveShell, redis_url: str
) -> None:
    shell.run_line_magic("llmgine", f"connect {redis_url} --namespace nb")
    with pytest.raises(MagicError, match="is the server running") as info:
        shell.run_line_magic("llmgine", "connect redis://127.0.0.1:1/0")  # a typo in the port
    assert f"still connected to `{redis_url}` (namespace `nb`)" in str(info.value)
    remote = get_bus().remote
    assert remote is not None
    assert remote.url == redis_url and remote.keys.namespace == "nb"


class SlowCommand(Command):
    """Runs on a second bus until the test releases it."""


@pytest.mark.timeout(120)
def test_a_connect_with_a_typo_leaves_the_remote_commands_running(
    shell: InteractiveShell, redis_url: str
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(command: SlowCommand) -> str:
        started.set()
        await release.wait()
        return "done"

    worker = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    worker.register_command_handler(SlowCommand, slow)
    run_sync(worker.connect(redis_url, "nb", heartbeat=0.2))
    try:
        shell.run_line_magic("llmgine", f"connect {redis_url} --namespace nb")
        bus = get_bus()
        run_sync(asyncio.wait_for(bus.remote.refresh(), 30))

        async def send() -> asyncio.Future[CommandResult]:
            running = asyncio.ensure_future(bus.execute(SlowCommand(), timeout=60))
            await asyncio.wait_for(started.wait(), 30)
            return running

        running = run_sync(send())
        with pytest.raises(MagicError, match="is the server running") as info:
            shell.run_line_magic("llmgine", "connect redis://127.0.0.1:1/0")  # a typo in the port
        assert f"still connected to `{redis_url}` (namespace `nb`)" in str(info.value)
        release.set()
        result = run_sync(asyncio.wait_for(running, 30))
        assert (result.success, result.result) == (True, "done")
    finally:
        run_sync(worker.stop())


def _shown(captured: CapturedIO) -> str:
    return "".join(output.data["text/plain"] for output in captured.outputs)


@pytest.mark.timeout(120)
def test_status_says_where_the_bus_is_connected_without_the_password(
    shell: InteractiveShell, redis_url: str
) -> None:
    shell.run_line_magic("llmgine", "start --quiet")
    with capture_output() as captured:
        assert shell.run_line_magic("llmgine", "status") is get_bus()
    assert "not connected to a shared bus" in _shown(captured)
    with_password = redis_url.replace("redis://", "redis://default:hunter2@")
    shell.run_line_magic("llmgine", f"connect {with_password}")
    with capture_output() as captured:
        shell.run_line_magic("llmgine", "status")
    assert "connected to `redis://default:***@127.0.0.1:" in _shown(captured)
    assert "hunter2" not in _shown(captured)


_WITHOUT_REDIS = """
import sys
sys.modules["redis"] = None  # as in a venv without the redis extra
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "llmgine")
try:
    shell.run_line_magic("llmgine", "connect redis://127.0.0.1:1/0")
except Exception as exc:
    print(type(exc).__name__, "|", exc)
"""


@pytest.mark.timeout(120)
def test_connect_without_the_redis_package_says_what_to_install(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_REDIS],
        cwd=tmp_path,
        env={**os.environ, "IPYTHONDIR": str(tmp_path / ".ipython")},
        capture_output=True,
        text=True,
        timeout=100,
        check=True,
    )
    assert done.stdout.strip() == (
        "MagicError | bus.connect() needs the redis package: pip install 'llmgine[redis]'."
    )
