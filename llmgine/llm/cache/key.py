"""The call cache's key: a hash of the request as the provider would send it.

Two requests share a key when a provider would send them the same way to the same
server: same provider, model, server (``Provider.endpoint``), messages, tools,
``tool_choice``, temperature, ``max_tokens``, options and output schema, and a salt
the prompt may give (``PromptCommand.cache_salt``: an experiment's repeats). What does not
change the answer is left out: the API key and headers (never read), and the request's
timeout. The hash is of canonical JSON (sorted keys, no spaces), so it is the same in
every process and every Python run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

from llmgine.llm.types import LLMRequest

__all__ = ["KEY_VERSION", "request_key"]

KEY_VERSION = 1
"""Part of every key: a new way of building keys starts with a new version, not old hits."""

_NOT_PART_OF_THE_ANSWER = frozenset({"timeout", "extra_headers", "headers", "api_key"})
"""Options the SDK takes that do not change the answer (or carry credentials)."""


def _plain(value: Any) -> Any:
    """A JSON-able form of an option value that ``json`` cannot write by itself."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(map(repr, value))
    return repr(value)


def canonical(
    request: LLMRequest, *, provider: str, endpoint: str | None, salt: str | None = None
) -> str:
    """The canonical JSON text hashed into ``request``'s key (see :func:`request_key`)."""
    options = {k: v for k, v in request.options.items() if k not in _NOT_PART_OF_THE_ANSWER}
    document = {
        "v": KEY_VERSION,
        "provider": provider,
        "endpoint": endpoint,
        "model": request.model,
        "messages": [m.model_dump(mode="json", exclude_defaults=True) for m in request.messages],
        "tools": request.tools,
        "tool_choice": request.tool_choice,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "options": options,
        "output_schema": request.output_schema,
    }
    if salt is not None:  # absent otherwise: keys made before salts existed still match
        document["salt"] = salt
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain
    )


def request_key(
    request: LLMRequest, *, provider: str, endpoint: str | None, salt: str | None = None
) -> str:
    """The cache key of ``request`` sent by ``provider`` to ``endpoint``: 64 hex digits.

    Args:
        request: The provider-neutral request.
        provider: The provider's name (``"openai"``, ``"offline"``, ...).
        endpoint: The server (``host:port``), ``None`` for an in-process model.
        salt: Keeps apart answers to one request that should differ (repeats).
    """
    text = canonical(request, provider=provider, endpoint=endpoint, salt=salt)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
