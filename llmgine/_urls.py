"""Service URLs fit for logs, reprs and widgets: every credential in them hidden."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url"]

_SECRET_PARAMS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "key",
        "secret",
        "auth",
        "authorization",
        "credential",
        "credentials",
    }
)
"""Query parameters whose values are credentials (``redis://h/0?password=...``)."""

HIDDEN = "***"


def redact_url(url: str) -> str:
    """Return ``url`` with its credentials replaced by ``***``.

    A password in the user part (``user:***@``), a user part alone (it may be a
    token: ``***@``), and the values of query parameters such as ``password`` or
    ``token`` are hidden; the host (IPv6 brackets included), port and path stay.
    A URL that cannot be parsed is hidden whole.
    """
    try:
        parts = urlsplit(url)
        userinfo, at, hostport = parts.netloc.rpartition("@")
        if at:
            user, colon, _ = userinfo.partition(":")
            userinfo = f"{user}:{HIDDEN}" if colon and user else HIDDEN
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(name.lower() in _SECRET_PARAMS for name, _ in pairs):
                query = urlencode(
                    [(n, HIDDEN if n.lower() in _SECRET_PARAMS else v) for n, v in pairs],
                    safe="*",
                )
        if not at and query == parts.query:
            return url  # nothing to hide
        netloc = f"{userinfo}@{hostport}" if at else hostport
        if not netloc and url.startswith(f"{parts.scheme}://"):  # unix:///path keeps its //
            return f"{parts.scheme}://{urlunsplit(('', '', parts.path, query, parts.fragment))}"
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<a URL that could not be parsed, hidden>"
