"""Service URLs fit for logs, reprs and widgets: every credential in them hidden.

:func:`redact_url` hides the credentials of one URL; :func:`redact_text` those of
every URL (and every ``api_key=...`` pair) inside a text such as a log message or
an error; :func:`url_secrets` lists the secret values a URL holds, for code that
must also hide them where they appear without their URL (a request line logged by
an HTTP library). :class:`RedactingFilter` applies :func:`redact_text` to the
records of other libraries' loggers.

The parser is written for credentials, not for routing: a password may hold
``#``, ``?``, ``/`` or ``@`` (``urllib.parse`` would cut it at ``#`` and show the
rest), so the user part ends at the last ``@`` that is followed by a host. When a
URL cannot be read with certainty, more is hidden rather than less.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote

__all__ = [
    "HIDDEN",
    "UNPARSABLE",
    "RedactingFilter",
    "hide_in_loggers",
    "is_secret_name",
    "redact_text",
    "redact_url",
    "split_userinfo",
    "url_secrets",
]

HIDDEN = "***"
"""What a hidden credential is replaced with."""

UNPARSABLE = "<a URL that could not be parsed, hidden>"
"""What a URL that cannot be read is replaced with (whole)."""

_SECRET_WORDS = (
    "key",
    "token",
    "secret",
    "pass",
    "pwd",
    "auth",
    "signature",
    "credential",
    "jwt",
    "bearer",
    "cookie",
)
"""A query parameter whose name contains one of these holds a credential."""
_SECRET_NAMES = frozenset({"sig", "code", "sas", "pw", "session", "sessionid"})
"""Short names that are credentials only as a whole name."""

_PATH_SECRET_NAMES = frozenset(
    {
        "token",
        "key",
        "secret",
        "apikey",
        "apitoken",
        "accesstoken",
        "authtoken",
        "password",
        "secretkey",
        "privatekey",
        "signature",
    }
)
"""A path segment named so (``/token/<secret>/``) is followed by a credential."""
_BOT_TOKEN = re.compile(r"(bot[0-9]+:)(.+)", re.IGNORECASE)
"""A bot token as a path segment (``/bot123456:<secret>/sendMessage``)."""
_QUOTED_PAIR = re.compile(r"""([A-Za-z0-9_.~%\-]+)=(["'])([^"'\s]*)\2""")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_HOST = r"(?:\[[0-9A-Za-z:.%_~\-]*\]|[^\[\]\s/?#@:\\]+)"
_HOSTPORT = re.compile(rf"(?:{_HOST})?(?::[0-9]*)?")
_HOST_AFTER_AT = re.compile(rf"{_HOST}(?::[0-9]*)?(?=[/?#]|$)")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_PAIR_IN_TEXT = re.compile(r"([A-Za-z0-9_.~%\-]+)=([^\s&;#'\"<>,)]*)")


def is_secret_name(name: str) -> bool:
    """Whether a query parameter (or header) named ``name`` holds a credential.

    Case, ``-``/``_`` and percent-encoding do not matter: ``api_key``, ``api-key``,
    ``X-API-Key``, ``access_token``, ``client_secret``, ``password``, ``sig`` are.
    """
    plain = re.sub(r"[^a-z0-9]", "", unquote(name).lower())
    return plain in _SECRET_NAMES or any(word in plain for word in _SECRET_WORDS)


def redact_url(url: str) -> str:
    """Return ``url`` with its credentials replaced by ``***``.

    A password in the user part (``user:***@``, also when it holds ``#``, ``/``,
    ``?`` or ``@``), a user part alone (it may be a token: ``***@``) and the values
    of query or fragment parameters named like a credential (``api_key``,
    ``api-key``, ``x-api-key``, ``access_token``, ``password``, ``sig``, ...; see
    :func:`is_secret_name`) are hidden; the scheme, host (IPv6 brackets included),
    port, path and other parameters stay. A URL that cannot be read is hidden whole.
    """
    parsed = _parse(url)
    if parsed is None:
        if "://" in url or "@" in url:
            return UNPARSABLE
        return _hide_pairs(url)  # not a URL at all ("a b"): only its api_key=... pairs
    prefix, userinfo, hostport, tail = parsed
    shown = prefix
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        clean_user = bool(user) and not re.search(r"[/?#@\s]", user)
        shown += f"{user}:{HIDDEN}@" if colon and clean_user else f"{HIDDEN}@"
    return shown + hostport + _redact_tail(tail)


def split_userinfo(url: str) -> tuple[str | None, str]:
    """Return ``url``'s user part (``user:password``, as written) and the URL without it.

    The user part is found as :func:`redact_url` finds it, so a password holding
    ``#``, ``/``, ``?`` or ``@`` stays whole. ``(None, url)`` when there is none or
    the URL cannot be read.
    """
    parsed = _parse(url)
    if parsed is None or parsed[1] is None:
        return None, url
    prefix, userinfo, hostport, tail = parsed
    return userinfo, prefix + hostport + tail


def url_secrets(url: str) -> list[str]:
    """Return the secret values ``url`` holds: its user part, password, credential parameters.

    Each value is given as written and percent-decoded, longest first, so that a
    caller can hide them wherever they appear (``text.replace(secret, "***")``).
    An unreadable URL gives the URL itself.
    """
    parsed = _parse(url)
    if parsed is None:
        return [url]
    _, userinfo, _, tail = parsed
    found: set[str] = set()
    if userinfo is not None:
        _, colon, password = userinfo.partition(":")
        found.update((userinfo, password) if colon else (userinfo,))
    path, params = (
        re.split(r"(?=[?#])", tail, maxsplit=1) if re.search("[?#]", tail) else (tail, "")
    )
    found.update(_path_secrets(path))
    for part in re.split(r"[;/]", path) + re.split(r"[?#&;]", params):
        name, eq, value = part.partition("=")
        if eq and value and is_secret_name(name):
            found.add(value.strip("\"'"))
        elif eq and "://" in unquote(value):  # a URL in a value: its own credentials
            found.update(url_secrets(unquote(value)))
    more = {form for value in found for form in (unquote(value), quote(value, safe=""))}
    more |= {quote_plus(unquote(value)) for value in found}
    return sorted((s for s in found | more if len(s) >= 3), key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with the credentials of every URL in it hidden.

    Besides whole URLs (``scheme://...``), ``name=value`` pairs named like a
    credential (``api_key=...`` in a logged request line) and every string of
    ``secrets`` (e.g. from :func:`url_secrets`) are replaced by ``***``.
    """
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, HIDDEN)
    # A quoted value first: a URL in text ends at a quote ("?api_key='...'").
    text = _QUOTED_PAIR.sub(
        lambda m: f"{m[1]}={m[2]}{HIDDEN}{m[2]}" if is_secret_name(m[1]) else m[0], text
    )
    return _hide_pairs(_URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text))


class RedactingFilter(logging.Filter):
    """A logging filter that hides credentials in the records of a logger.

    The message (with its arguments), the traceback and the stack of each record
    go through :func:`redact_text`, with ``secrets`` hidden wherever they appear.
    Install it on the loggers of libraries that log URLs (``logger.addFilter``).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: set[str] = set(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Hide credentials in ``record`` in place; always keep the record."""
        secrets = tuple(self.secrets)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: show the template, never its arguments
            logging.getLogger(__name__).debug("Unformattable log record", exc_info=True)
            message = str(record.msg)
        record.msg, record.args = redact_text(message, secrets), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, secrets)
        return True


def hide_in_loggers(names: Iterable[str], secrets: Iterable[str] = ()) -> None:
    """Hide credentials in every record of the loggers ``names`` from now on.

    Each logger gets one :class:`RedactingFilter` (added once, kept for the
    process); ``secrets`` are added to what it hides wherever they appear. Filters
    act on the records a logger makes itself, so name the loggers that log URLs.
    """
    secrets = set(secrets)
    for name in names:
        target = logging.getLogger(name)
        found = next((f for f in target.filters if isinstance(f, RedactingFilter)), None)
        if found is None:
            target.addFilter(RedactingFilter(secrets))
        else:
            found.secrets = found.secrets | secrets  # a new set: filter() may be iterating


def _hide_pairs(text: str) -> str:
    return _PAIR_IN_TEXT.sub(
        lambda m: f"{m[1]}={HIDDEN}" if m[2] and is_secret_name(m[1]) else m[0], text
    )


def _parse(url: str) -> tuple[str, str | None, str, str] | None:
    """Split ``url`` into (scheme and ``//``, user part or None, host and port, the rest)."""
    scheme = _SCHEME.match(url)
    if scheme is not None and url.startswith("//", scheme.end()):
        prefix, rest = url[: scheme.end() + 2], url[scheme.end() + 2 :]
    else:  # no authority marker: "user:pw@host:1", "host:6379/0", "unix:/path"
        prefix, rest = "", url
    end = _authority_end(rest)
    authority = rest[:end]
    userinfo: str | None = None
    host = authority
    if "@" in authority:
        cut = authority.rindex("@")
        userinfo, host = authority[:cut], authority[cut + 1 :]
    last = _last_at_before_host(rest)
    # An "@" after where the authority seems to end: a password holding "/", "?" or
    # "#" (hide all of it), unless the "@" reads as part of a path or a query value.
    if last is not None and last >= end and not _at_is_in_path_or_query(rest, end, last, host):
        userinfo = rest[:last]
        end = _authority_end(rest, last + 1)
        host = rest[last + 1 : end]
    if _HOSTPORT.fullmatch(host) is None:
        return None
    return prefix, userinfo, host, rest[end:]


def _authority_end(rest: str, start: int = 0) -> int:
    ends = [i for i in (rest.find(c, start) for c in "/?#") if i >= 0]
    return min(ends, default=len(rest))


def _last_at_before_host(rest: str) -> int | None:
    """The index of the last ``@`` that is followed by a host (and port)."""
    index = rest.rfind("@")
    while index >= 0:
        if _HOST_AFTER_AT.match(rest, index + 1):
            return index
        index = rest.rfind("@", 0, index)
    return None


def _at_is_in_path_or_query(rest: str, end: int, at: int, host: str) -> bool:
    """Whether the ``@`` at ``at`` belongs to a path (``/@user``) or a query value.

    Only when what precedes it reads as a plain host: ``u:12/34@h`` may be the user
    ``u`` with the password ``12/34``, so a host with a port before a path is not.
    """
    if not host or _HOSTPORT.fullmatch(host) is None:
        return False
    between = rest[end:at]
    cut = min((i for i in (between.find("?"), between.find("#")) if i >= 0), default=-1)
    if cut >= 0:
        return "=" in between[cut:]  # "?email=a@b.com"; "?x@h" may be a password
    return ":" not in host.rpartition("]")[2]  # "h/@user"; "u:12/34@h" may be a password


def _redact_tail(tail: str) -> str:
    """Hide credential values in the path, query and fragment parameters of ``tail``."""
    path, qmark, rest = tail.partition("?")
    if not qmark:
        path, hash_, fragment = tail.partition("#")
        return _redact_path(path) + (hash_ + _redact_pairs(fragment) if hash_ else "")
    query, hash_, fragment = rest.partition("#")
    shown = _redact_path(path) + qmark + _redact_pairs(query)
    return shown + (hash_ + _redact_pairs(fragment) if hash_ else "")


def _redact_path(path: str) -> str:
    """Hide ``;name=value`` parameters and token segments of a path."""
    segments = path.split("/")
    hide = set(_secret_segments(segments))
    for i, segment in enumerate(segments):
        bot = _BOT_TOKEN.fullmatch(segment)
        if i in hide:
            segments[i] = HIDDEN
        elif bot is not None:
            segments[i] = bot[1] + HIDDEN
        elif ";" in segment:
            head, _, params = segment.partition(";")
            segments[i] = head + ";" + _redact_pairs(params)
    return "/".join(segments)


def _secret_segments(segments: list[str]) -> list[int]:
    """The indexes of the segments that follow one named like a credential."""
    return [
        i + 1
        for i, segment in enumerate(segments[:-1])
        if segments[i + 1]
        and re.sub(r"[^a-z0-9]", "", unquote(segment.partition(";")[0]).lower())
        in _PATH_SECRET_NAMES
    ]


def _path_secrets(path: str) -> list[str]:
    segments = path.split("/")
    found = [segments[i].partition(";")[0] for i in _secret_segments(segments)]
    found += [bot[2] for s in segments if (bot := _BOT_TOKEN.fullmatch(s)) is not None]
    return found


def _redact_pairs(params: str) -> str:
    parts = re.split(r"([&;])", params)
    for i in range(0, len(parts), 2):
        name, eq, value = parts[i].partition("=")
        if eq and value and is_secret_name(name):
            parts[i] = f"{name}={HIDDEN}"
        elif eq and "://" in value:  # a URL in a value (a redirect, a DSN): its credentials
            parts[i] = f"{name}={redact_url(value)}"
        elif eq and "://" in unquote(value):
            plain = unquote(value)
            shown = redact_url(plain)
            parts[i] = parts[i] if shown == plain else f"{name}={quote(shown, safe='*')}"
    return "".join(parts)
