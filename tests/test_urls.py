"""Service URLs shown in logs, reprs and widgets never carry a credential."""

from __future__ import annotations

import pytest

from llmgine.bus.remote.keys import redact
from llmgine.observability.otlp import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:s3cret@host/0", "redis://***@host/0"),
        ("https://s3cret@collector.example/v1/traces", "https://***@collector.example/v1/traces"),
        ("redis://host:6379/0?password=s3cret", "redis://host:6379/0?password=***"),
        ("unix:///tmp/redis.sock?password=s3cret&db=2", "unix:///tmp/redis.sock?password=***&db=2"),
        ("https://h/v1?Token=s3cret&x=1", "https://h/v1?Token=***&x=1"),
        ("rediss://u:s3cret@[::1]:6379/0", "rediss://u:***@[::1]:6379/0"),
        ("redis://u:s3c@ret@host/0", "redis://u:***@host/0"),
        ("redis://u:s3cret@host:99999999/0", "redis://u:***@host:99999999/0"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("unix:///tmp/redis.sock", "unix:///tmp/redis.sock"),
        ("http://[::1:s3cret", "<a URL that could not be parsed, hidden>"),
    ],
)
def test_credentials_are_hidden_and_the_rest_kept(url: str, shown: str) -> None:
    for hide in (redact, redact_url):  # the shared bus's and the exporter's (one function)
        assert hide(url) == shown
        assert "s3c" not in hide(url)
