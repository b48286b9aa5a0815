"""Where :class:`~llmgine.observability.otlp.OTLPExporter` sends: the URL, its credentials hidden.

A ``user:password@`` in the URL becomes a Basic ``Authorization`` header (URLs end
up in log messages), and the URL's secrets are hidden from now on in the records
of every logger that may show it (OpenTelemetry's, urllib3's, requests').
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

from llmgine._urls import hide_in_loggers, redact_url, split_userinfo, url_secrets
from llmgine.errors import ConfigurationError

__all__ = ["otlp_endpoint"]

_LOGGERS_WITH_URLS = (
    "llmgine.observability.otlp",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk._shared_internal",
    "urllib3",
    "urllib3.connection",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
    "requests",
)
"""Loggers whose records may hold the endpoint's URL: each gets a RedactingFilter."""


def otlp_endpoint(endpoint: str, headers: Mapping[str, str] | None) -> tuple[str, dict[str, str]]:
    """Return the URL to post spans to (``/v1/traces`` added to a bare host) and the headers.

    Raises:
        ConfigurationError: ``endpoint`` is not an http(s) URL.
    """
    hide_in_loggers(_LOGGERS_WITH_URLS, url_secrets(endpoint))
    userinfo, bare = split_userinfo(endpoint)
    try:
        parts = urlsplit(bare)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        valid = valid and (parts.port or 0) >= 0  # raises for a port that is not a number
    except ValueError:
        valid = False
    if not valid:
        raise ConfigurationError(
            f"OTLP endpoint {redact_url(endpoint)!r} is not an http(s) URL, "
            "e.g. http://127.0.0.1:6006"
        )
    headers = dict(headers or {})
    if userinfo is not None:
        # Credentials move from the URL into a header: URLs end up in log messages.
        user, _, secret = userinfo.partition(":")
        token = base64.b64encode(f"{unquote(user)}:{unquote(secret)}".encode()).decode()
        headers.setdefault("Authorization", f"Basic {token}")
    if parts.path in ("", "/"):
        parts = parts._replace(path="/v1/traces")
    return urlunsplit(parts), headers
