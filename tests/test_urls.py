"""Service URLs shown in logs, reprs and widgets never carry a credential."""

from __future__ import annotations

import logging
import sys
from urllib.parse import unquote

import pytest

from llmgine._urls import RedactingFilter, hide_in_loggers, redact_text, redact_url, url_secrets
from llmgine.bus.remote.keys import redact
from llmgine.observability.otlp import redact_url as otlp_redact_url


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
    for hide in (redact, redact_url, otlp_redact_url):  # one function, three names
        assert hide(url) == shown
        assert "s3c" not in hide(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # urllib.parse cuts a URL at "#": the password's tail would show as the host.
        ("redis://:s3c#ret@host:6379/0", "redis://***@host:6379/0"),
        ("redis://u:s3c#ret@host:6379/0", "redis://u:***@host:6379/0"),
        ("redis://u:12#s3cret@host:6379/0", "redis://u:***@host:6379/0"),
        ("redis://u:12/s3cret@host:6379/0", "redis://u:***@host:6379/0"),
        ("redis://:s3c/re?t#x@[::1]:6379/0", "redis://***@[::1]:6379/0"),
        ("redis://u:s3c@re#t@host", "redis://u:***@host"),
        ("user:s3cret@host:6379", "user:***@host:6379"),
    ],
)
def test_a_password_holding_url_delimiters_is_hidden_whole(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://h:1/v1/traces?api_key=s3cret", "http://h:1/v1/traces?api_key=***"),
        ("http://h:1/v1/traces?api-key=s3cret", "http://h:1/v1/traces?api-key=***"),
        ("http://h:1/v1/traces?X-API-Key=s3cret&a=1", "http://h:1/v1/traces?X-API-Key=***&a=1"),
        ("https://h/x?access_token=s3c1&sig=s3c2&q=1", "https://h/x?access_token=***&sig=***&q=1"),
        ("https://h/x?client_secret=s3c;auth=s3c2", "https://h/x?client_secret=***;auth=***"),
        ("https://h/x?X-Amz-Signature=s3c&X-Amz-Credential=s3c2", None),
        ("https://h/x?api%5Fkey=s3cret", "https://h/x?api%5Fkey=***"),
        ("https://h/cb#access_token=s3cret&state=1", "https://h/cb#access_token=***&state=1"),
        ("https://h/x?passwd=s3cret", "https://h/x?passwd=***"),
    ],
)
def test_every_credential_parameter_is_hidden(url: str, shown: str | None) -> None:
    assert "s3c" not in redact_url(url)
    if shown is not None:
        assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "http://[fe80::1%25eth0]:80/p?email=a@b.com",
        "https://host/@user/feed",
        "127.0.0.1:6006",
        "http://127.0.0.1:4318/v1/traces?service=x&db=2",
        "mcp-server-time",
    ],
)
def test_what_holds_no_credential_is_left_as_it_is(url: str) -> None:
    assert redact_url(url) == url


def test_the_host_stays_beside_an_at_sign_in_the_query() -> None:
    assert redact_url("http://u:s3cret@h/x?email=a@b.com") == "http://u:***@h/x?email=a@b.com"


def test_a_url_s_secrets_are_listed_as_written_and_decoded() -> None:
    secrets = url_secrets("http://u:s3c%23ret@h/p?api_key=a%2Fb9&x=1")
    assert {"s3c%23ret", "s3c#ret", "a%2Fb9", "a/b9"} <= set(secrets)
    assert "1" not in secrets and "h" not in secrets
    assert url_secrets("http://h/p") == []


def test_text_with_urls_and_request_lines_is_redacted() -> None:
    text = (
        "Retrying after connection broken by 'NewConnectionError': "
        "/v1/traces?api_key=s3cret1 (Caused by http://u:s3cret2@h:1/x?token=s3cret3, x=1)"
    )
    shown = redact_text(text)
    assert "s3cret" not in shown
    assert "x=1" in shown and "http://u:***@h:1/x?token=***" in shown
    assert redact_text("failed: s3cret4 was refused", ["s3cret4"]) == "failed: *** was refused"


def test_a_logger_with_the_filter_never_shows_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    name = "tests.test_urls.library"
    hide_in_loggers([name], ["hunter22"])
    hide_in_loggers([name], ["swordfish"])  # one filter per logger, secrets added
    library = logging.getLogger(name)
    assert sum(isinstance(f, RedactingFilter) for f in library.filters) == 1
    with caplog.at_level(logging.DEBUG, logger=name):
        library.warning("Failed to export to %s", "http://h:1/v1/traces?api-key=hunter22")
        try:
            raise ConnectionError("url: /v1/traces?x-api-key=swordfish")
        except ConnectionError:
            library.exception("export raised", stack_info=True)
        library.error("bad %d format", "swordfish")  # a broken record shows no argument
    assert "hunter22" not in caplog.text and "swordfish" not in caplog.text
    assert "Failed to export to http://h:1/v1/traces?api-key=***" in caplog.text
    assert "ConnectionError: url: /v1/traces?x-api-key=***" in caplog.text
    for record in caplog.records:
        assert record.exc_info is None or record.exc_info == (None, None, None)
        assert "swordfish" not in str(record.exc_text) + str(record.stack_info)
    assert sys.exc_info() == (None, None, None)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://h/cb?next=https://h2/?api_key=s3cret",
            "https://h/cb?next=https://h2/?api_key=***",
        ),
        (
            "https://h/x?dsn=postgres://u:s3cret@db/x&a=1",
            "https://h/x?dsn=postgres://u:***@db/x&a=1",
        ),
        ("https://h/x?r=https%3A%2F%2Fu%3As3cret%40h2", None),
        ("https://h/x;api_key=s3cret/y;v=1", "https://h/x;api_key=***/y;v=1"),
        ('https://h/x?api_key="s3cret"&a=1', "https://h/x?api_key=***&a=1"),
    ],
)
def test_a_credential_inside_a_query_value_or_path_parameter_is_hidden(
    url: str, shown: str | None
) -> None:
    assert "s3c" not in redact_url(url)
    if shown is not None:
        assert redact_url(url) == shown
    assert "s3c" not in redact_text(f"failed: {url} (refused)")
    assert {"s3cret"} <= {unquote(s) for s in url_secrets(url)} or "%3A" in url


def test_a_quoted_credential_in_text_is_hidden_whole() -> None:
    shown = redact_text("GET https://h/x?api_key=\"s3cret37\" and token='s3cret38' failed")
    assert "s3cret" not in shown
    assert 'api_key="***"' in shown and "token='***'" in shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://h/v1/token/s3cret/x", "https://h/v1/token/***/x"),
        ("https://h/api/keys/key/s3cret", "https://h/api/keys/key/***"),
        ("https://api.telegram.org/bot123456:s3cret/sendMessage", None),
        ("https://h/webhook/secret/s3cret?x=1", "https://h/webhook/secret/***?x=1"),
    ],
)
def test_a_token_given_as_a_path_segment_is_hidden(url: str, shown: str | None) -> None:
    assert "s3c" not in redact_url(url)
    assert "s3c" not in redact_text(f"POST {url} -> 401")
    if shown is not None:
        assert redact_url(url) == shown
    assert "s3cret" in url_secrets(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://h/v1/keys/list",
        "https://h/zoo/monkey/banana",
        "https://h/auth/login/x",
        "https://h/robot42/status",
        "https://h/bot123/status",
        "https://h/x;v=1/y?next=https://h2/p?q=1",
    ],
)
def test_an_ordinary_path_stays_readable(url: str) -> None:
    assert redact_url(url) == url
