"""The OpenAI provider's wire format: a request's body and options, an answer read from its JSON.

``chat.completions.create()`` spends most of its CPU on conveniences: walking the
request's ``TypedDict`` annotations to transform it (nothing to transform in the
plain JSON this provider sends) and building pydantic models of the answer. The
provider sends through ``client.post`` instead (the SDK's documented way to call an
endpoint directly: its auth, base URL, retries, timeouts and error mapping stay) and
reads the JSON here, with ``create()``'s own rules: the same parameter names, the
same request options, ``NotGiven``/``Omit`` dropped, ``None`` sent as ``null``.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from llmgine.errors import ConfigurationError, ProviderError
from llmgine.llm.providers.openai_errors import redact
from llmgine.llm.types import Completion, ToolCall, Usage

__all__ = ["completion_of", "request_parts", "start_of", "usage_of"]

# create()'s request options, by the name it takes and the name the SDK's request options use.
_REQUEST_OPTIONS = {"extra_headers": "headers", "extra_query": "params", "extra_body": "extra_json"}


@functools.cache
def _parameters() -> frozenset[str]:
    """The keyword arguments ``chat.completions.create()`` takes, read once from the SDK."""
    from openai.resources.chat.completions import AsyncCompletions

    parameters = inspect.signature(AsyncCompletions.create).parameters
    return frozenset(name for name in parameters if name != "self")


@functools.cache
def _omitted_types() -> tuple[type, ...]:
    """The SDK's markers of an omitted value, imported once (the ``openai`` SDK is lazy)."""
    from openai import NotGiven, Omit

    return (NotGiven, Omit)


def _not_given(value: Any) -> bool:
    return isinstance(value, _omitted_types())


def request_parts(arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``create()``'s keyword arguments into a JSON body and the SDK's request options.

    Args:
        arguments: What ``chat.completions.create(**arguments)`` would be given.

    Returns:
        The body to post to ``/chat/completions`` and the ``options`` of ``client.post``
        (``headers``, ``params``, ``extra_json``, ``timeout``), as ``create()`` makes them.

    Raises:
        ConfigurationError: A key is not a parameter of ``create()`` (the message
            ``create()`` would give, and where server-specific fields go).
        TypeError: ``response_format`` is a pydantic class (``create()``'s own error).
    """
    known = _parameters()
    body: dict[str, Any] = {}
    options: dict[str, Any] = {"security": {"bearer_auth": True}}  # create()'s auth: the key
    for key, value in arguments.items():
        if key not in known:
            raise ConfigurationError(
                f"openai: got an unexpected keyword argument '{key}': this option is not a "
                "Chat Completions parameter; put server-specific fields under "
                'options={"extra_body": {...}}.'
            )
        if key in _REQUEST_OPTIONS:
            if value is not None:
                options[_REQUEST_OPTIONS[key]] = dict(value) if key == "extra_query" else value
        elif key == "timeout":
            if not _not_given(value):
                options["timeout"] = value  # None: no timeout, as create(timeout=None)
        elif not _not_given(value):
            body[key] = value if key == "messages" else _plain(value)
    _check_response_format(body.get("response_format"))
    return body, options


def _plain(value: Any) -> Any:
    """``value`` as ``create()``'s request transform leaves it, for JSON.

    Omitted values (``NotGiven``, ``Omit``) go at any depth, other iterables than
    strings and mappings become lists, a pydantic object its JSON form. (The messages
    this provider builds are plain already and skip this.)
    """
    if isinstance(value, str | int | float | bool | None):
        return value
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if not _not_given(v)}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        return [_plain(item) for item in value if not _not_given(item)]
    return value


def _check_response_format(response_format: Any) -> None:
    """``create()`` refuses a pydantic class there (``parse()`` takes those); so does this."""
    if isinstance(response_format, type):
        import pydantic

        if issubclass(response_format, pydantic.BaseModel):
            raise TypeError(
                "You tried to pass a `BaseModel` class to `chat.completions.create()`; "
                "You must use `chat.completions.parse()` instead"
            )


def usage_of(usage: Any) -> Usage | None:
    """Token usage from a response's ``usage``: its JSON (a dict) or the SDK's object.

    ``prompt_tokens_details.cached_tokens`` (OpenAI's prompt caching) becomes
    ``cached_input_tokens``; a missing count is 0; no ``usage`` at all is ``None``.
    """
    if usage is None:
        return None
    details = _field(usage, "prompt_tokens_details")
    return Usage(
        input_tokens=_field(usage, "prompt_tokens") or 0,
        output_tokens=_field(usage, "completion_tokens") or 0,
        cached_input_tokens=_field(details, "cached_tokens") or 0,
    )


def _field(value: Any, name: str) -> Any:
    """``value[name]`` of a JSON object, ``value.name`` of an SDK object; ``None`` when absent."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def completion_of(
    content: bytes, *, model: str, where: str, secrets: tuple[str, ...] = ()
) -> tuple[Completion, Any]:
    """The answer in a Chat Completions response body, and the body's ``usage`` (unread).

    Read as the SDK reads it: absent fields are ``None``, tool calls other than
    functions are skipped, a function call without arguments gets ``"{}"``.

    Args:
        content: The body of a 2xx answer.
        model: The model asked (named in errors).
        where: The server, as shown (no credentials).
        secrets: Strings never to show (the key, the URL's credentials), should the
            body echo them.

    Raises:
        ProviderError: The body is not JSON, or not a Chat Completion (no ``choices``).
    """
    try:
        data = json.loads(content)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise ProviderError(
            f"openai at {where} answered {model} with something that is not JSON "
            f"({start_of(content, secrets)}); check that base_url points at an OpenAI-compatible "
            "API (it usually ends in /v1)."
        ) from None
    choices = _field(data, "choices")
    if not choices:
        raise ProviderError(f"openai: the response to {model} had no choices.")
    choice = choices[0] if isinstance(choices, list) else None
    message = _field(choice, "message")
    if not isinstance(message, dict):
        raise ProviderError(
            f"openai at {where} answered {model} with JSON that is not a Chat Completion "
            f"(no choices[0].message): {start_of(content, secrets)}"
        )
    calls = [
        ToolCall(
            id=_field(call, "id"),
            name=_field(function, "name"),
            arguments=_field(function, "arguments") or "{}",
        )
        for call in message.get("tool_calls") or []
        if (function := _field(call, "function")) is not None
    ]
    completion = Completion(
        content=message.get("content"),
        tool_calls=calls,
        finish_reason=_field(choice, "finish_reason"),
        model=data.get("model"),
    )
    return completion, data.get("usage")


def start_of(content: bytes, secrets: tuple[str, ...], limit: int = 80) -> str:
    """The body's first characters, for an error, secrets masked (an empty body said so)."""
    text = redact(" ".join(content.decode("utf-8", "replace").split()), secrets)
    if not text:
        return "an empty body"
    return repr(text[:limit] + ("..." if len(text) > limit else ""))
