"""%llmgine connect: the notebook's default bus joins a shared bus on a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell

from llmgine.bus.remote import RedisServer
from llmgine.notebook import MagicError, get_bus


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
