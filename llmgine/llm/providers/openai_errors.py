"""The OpenAI provider's errors: SDK exceptions as short ``ProviderError``s that hold no secret."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
import re

from llmgine.errors import (
    ProviderAuthenticationError,
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimitError,
    ProviderTimeoutError,
)
from llmgine.llm.honoured_wait import honoured
from llmgine.llm.retries import retry_after

__all__ = ["key_secrets", "never_connected", "provider_error", "redact", "short"]

logger = logging.getLogger("llmgine.llm.providers.openai")  # the provider's own logger

_KEY_LIKE = re.compile(r"\b(sk|key)-[A-Za-z0-9_\-*]{6,}")
_MAX_DETAIL = 300


_SHORT_SECRET = 8
"""Secrets shorter than this (``"x"``, ``"EMPTY"``: a local server's placeholder key) are
masked where they stand as a whole token only, not inside the words of a message."""


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Return ``text`` with the given secrets and anything shaped like an API key masked.

    A secret of at least 8 characters is masked wherever it appears; a shorter one
    only as a token of its own (between characters that are not letters, digits, ``_``
    or ``-``), so a key such as ``"x"`` does not turn "max" into "ma[redacted]".
    """
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _SHORT_SECRET:
            text = text.replace(secret, "[redacted]")
        elif secret:
            token = rf"(?<![\w-]){re.escape(secret)}(?![\w-])"
            text = re.sub(token, "[redacted]", text)
    return _KEY_LIKE.sub("[redacted]", text)


def key_secrets(api_key: str | None) -> tuple[str, ...]:
    """The key, and the key without its ``sk-``/``sk-proj-`` style prefix (servers echo either)."""
    if not api_key:
        return ()
    secrets = [api_key]
    rest = api_key
    for _ in range(2):  # "sk-", then "proj-" of "sk-proj-..."
        head, dash, rest = rest.partition("-")
        if not dash or not head.isalpha() or len(rest) < 8:
            break
        secrets.append(rest)
    return tuple(secrets)


def short(detail: str) -> str:
    """The first line of a server's error text, cut to a readable length."""
    lines = [line.strip() for line in detail.strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if len(first) > _MAX_DETAIL:
        first = first[: _MAX_DETAIL - 3].rstrip() + "..."
    elif len(lines) > 1:
        first += " ..."
    return first


def provider_error(
    exc: Exception, *, where: str, secrets: tuple[str, ...], during_answer: bool = False
) -> Exception:
    """Turn an SDK exception into a short, readable ``ProviderError`` that holds no secret.

    Args:
        exc: What the ``openai`` SDK raised.
        where: The server, as shown (its URL without credentials).
        secrets: Strings never to show (the key, the URL's credentials).
        during_answer: The answer had begun (a broken connection, not a refused one).
    """
    import openai

    body = getattr(exc, "body", None)
    raw = body.get("message") if isinstance(body, dict) else None
    full = redact(str(raw or getattr(exc, "message", None) or exc), secrets)
    detail = short(full)
    detail = detail if detail.endswith("...") else detail.rstrip(".")
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) if response is not None else None
    asked = honoured(retry_after(headers))
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ProviderAuthenticationError(
            f"openai rejected the API key ({status}): {detail}. Check OPENAI_API_KEY.",
            status=status,
        )
    if isinstance(exc, openai.RateLimitError):
        wait = f" (it asks to wait {asked:g} s)" if asked is not None else ""
        return ProviderRateLimitError(
            f"openai is rate limiting this key (429){wait}: {detail}. Set RateLimits on the "
            "LLMEngine to stay under the limit, or check the account's quota.",
            status=status,
            retry_after=asked,
        )
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeoutError(
            f"openai at {where} did not answer in time: {detail}. Raise the timeout "
            "(timeout=... on the prompt or the LLMEngine) or check the server."
        )
    if isinstance(exc, openai.APIConnectionError):
        if during_answer or not never_connected(exc):
            return ProviderConnectionError(
                f"openai at {where} was reached but the connection broke before the "
                f"answer was complete: {detail}. The server may have crashed or restarted; "
                "check its log."
            )
        return ProviderConnectionError(
            f"openai could not be reached at {where}: {detail}. Check that the server "
            "is running, the network, or base_url."
        )
    if isinstance(exc, openai.APIStatusError):
        if full.strip() != short(full) or (status is not None and status >= 500):
            logger.debug("openai answered %s: %s", status, full)
        hint = _NOT_FOUND_HINT if status == 404 else ""
        return ProviderError(
            f"openai answered {status} (at {where}): {detail}{hint}",
            status=status,
            retry_after=asked,
        )
    if isinstance(exc, openai.OpenAIError):
        return ProviderError(f"openai: {detail}")
    return exc


_NOT_FOUND_HINT = (
    ". Check the model name, and that the server at base_url serves that model "
    "(a server lists its models at <base_url>/models)"
)
"""What a 404 (``The model `x` does not exist``, a wrong path) asks the user to check."""


@functools.cache
def _connect_errors() -> tuple[type[BaseException], ...]:
    """The errors of failing to connect, in the HTTP library the installed openai SDK uses.

    The SDK has moved from ``httpx`` to ``httpx2``; neither is llmgine's own dependency,
    so the library is found from the installed ``openai`` (its HTTP client's base
    class and its ``httpx``-like requirements), never imported by a fixed name.
    """
    import openai

    client = getattr(openai, "DefaultAsyncHttpxClient", None)
    names = [c.__module__.partition(".")[0] for c in getattr(client, "__mro__", ())]
    try:
        requires = importlib.metadata.requires("openai") or []
    except importlib.metadata.PackageNotFoundError:
        requires = []
    for requirement in requires:
        name = re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("-", "_")
        if name.startswith("httpx") and "extra ==" not in requirement:
            names.append(name)
    found: list[type[BaseException]] = [ConnectionRefusedError]
    for name in dict.fromkeys(n for n in names if n not in ("openai", "builtins")):
        try:
            transport = importlib.import_module(name)
        except ImportError:
            continue
        for attribute in ("ConnectError", "ConnectTimeout"):
            error = getattr(transport, attribute, None)
            if isinstance(error, type) and issubclass(error, BaseException):
                found.append(error)
    return tuple(found)


def never_connected(exc: BaseException) -> bool:
    """Whether a connection error happened before any connection was made."""
    errors = _connect_errors()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, errors):
            return True
        current = current.__cause__ or current.__context__
    return False
