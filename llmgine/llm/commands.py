"""Commands the LLM engine handles."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from llmgine.messages.commands import Command

__all__ = ["ClearConversationCommand", "PromptCommand", "SetSystemPromptCommand", "credentials_in"]

_CREDENTIAL_FIELDS = frozenset(
    {
        "apikey",
        "token",
        "accesstoken",
        "authtoken",
        "bearertoken",
        "idtoken",
        "refreshtoken",
        "sessiontoken",
        "authorization",
        "auth",
        "bearer",
        "password",
        "passwd",
        "secret",
        "clientsecret",
        "privatekey",
        "credential",
        "credentials",
    }
)
"""Option and body fields that are credentials, as :func:`_field` writes their names
(``max_tokens`` and ``top_k`` are not)."""
_CREDENTIAL_ENDINGS = ("apikey", "accesstoken", "authtoken", "secret", "password")
"""Endings of a field's name that make it a credential (``openai_api_key``, ``client_secret``)."""
_NAMED_MAPS = frozenset({"extra_headers", "headers", "default_headers", "extra_query", "query"})
"""Request options whose keys are header or query names: secret names there are credentials."""
_BODIES = frozenset({"extra_body", "body"})
"""Request options sent as JSON fields of the request: their fields, nested ones too."""


def _field(name: object) -> str:
    return "".join(c for c in str(name).lower() if c.isalnum())


def _is_credential_field(name: object) -> bool:
    plain = _field(name)
    return plain in _CREDENTIAL_FIELDS or plain.endswith(_CREDENTIAL_ENDINGS)


def _credentials_in_body(value: Any, where: str) -> list[str]:
    """Where a credential is among the fields of ``value`` (dicts and lists, nested)."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, inner in value.items():
            here = f"{where}[{k!r}]"
            if _is_credential_field(k):
                found.append(here)
            else:
                found += _credentials_in_body(inner, here)
    elif isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            found += _credentials_in_body(inner, f"{where}[{i}]")
    return found


def credentials_in(options: dict[str, Any]) -> list[str]:
    """The names of request options that hold a credential: headers, query and body included.

    ``api_key``, an ``Authorization`` or ``X-API-Key`` header, a ``token`` query parameter,
    an ``extra_body`` field such as ``api_key``, ``token`` or ``password`` (at any depth).
    """
    from llmgine._urls import is_secret_name

    found = [k for k in options if _is_credential_field(k)]
    for name in _NAMED_MAPS & set(options):
        inner = options[name]
        if isinstance(inner, dict):
            found += [f"{name}[{k!r}]" for k in inner if is_secret_name(str(k))]
    for name in _BODIES & set(options):
        found += _credentials_in_body(options[name], name)
    return found


class PromptCommand(Command):
    """Send a prompt; the result is the assistant's final text."""

    model_config = ConfigDict(hide_input_in_errors=True)  # a refused option may be a credential

    prompt: str
    conversation_id: str = "default"
    """Prompts with the same id continue one conversation."""
    model: str | None = None
    """A model string for this prompt only (``"offline"``, ``"openai:gpt-4o-mini"``)."""
    stream: bool = False
    """Stream the answer: ``LLMDeltaEvent``s are published as text arrives."""
    temperature: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Sampling temperature: a finite number, 0 or more (``None``: the provider's default)."""
    max_tokens: int | None = Field(default=None, ge=1)
    """The longest answer, in tokens: 1 or more (``None``: the provider's default)."""
    use_tools: bool = True
    """Offer the engine's tools to the model."""
    tool_choice: str | None = None
    """``"auto"``, ``"none"``, ``"required"`` or a tool's name. A forced choice
    (``"required"`` or a name) applies to the first call; once the tool has run, the
    choice is left to the model so it can answer. ``None``: the provider's default."""
    timeout: float | None = Field(default=None, gt=0)
    """Seconds the whole prompt may take (every call and tool run); ``None`` means the
    engine's default."""
    options: dict[str, Any] | None = None
    """Request parameters passed to the provider as they are (``seed``, ``stop``, ``top_p``,
    ``extra_body``, ...), over the engine's ``options``."""
    output_type: type[BaseModel] | None = None
    """A pydantic model the answer must match: ``result.result`` is then an instance of it."""
    cache: bool | None = None
    """``None``: the engine's call cache, if it has one. ``True``: that cache, or the
    default cache file when the engine has none (what ``map`` sends, so a re-run costs
    nothing twice). ``False``: always ask the model."""
    cache_salt: str | None = None
    """Part of the call cache's key, never sent: distinct values keep distinct answers to
    one request (an experiment's repeats)."""
    system_prompt: str | None = None
    """The system prompt for this conversation from this prompt on (saved with its turn);
    ``None`` keeps the conversation's."""
    remember: bool = True
    """Save this turn in its conversation. ``False``: a one-off prompt whose conversation
    keeps nothing (``map``'s rows: a batch of 100,000 rows leaves no 100,000 conversations)."""
    max_context_tokens: int | None = Field(default=None, gt=0)
    """The model's window for this prompt (older turns are left out of the request to fit);
    ``None`` means the engine's ``max_context_tokens``."""

    @field_validator("options")
    @classmethod
    def _no_credentials(cls, options: dict[str, Any] | None) -> dict[str, Any] | None:
        """Options go into the log and over Redis: a credential there would leak."""
        found = credentials_in(options or {})
        if found:
            raise ValueError(
                f"options carry a credential ({', '.join(found)}); options are written to the log "
                "and sent to other processes. Give credentials to the provider instead: "
                "OpenAIProvider(api_key=..., default_headers=...), or its environment variable"
            )
        return options

    @field_validator("output_type", mode="before")
    @classmethod
    def _output_type_by_name(cls, value: Any) -> Any:
        """A dotted name (how the log and Redis carry it) back to the model it names."""
        if not isinstance(value, str):
            return value
        module_name, _, name = value.rpartition(".")
        try:
            found: Any = importlib.import_module(module_name)
            for part in name.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(
                f"output_type {value!r} cannot be imported here: define the model in a module "
                "every process can import (not in a notebook cell) to use it across processes"
            ) from exc
        if not (isinstance(found, type) and issubclass(found, BaseModel)):
            raise ValueError(f"output_type {value!r} is not a pydantic model")
        return found

    @field_serializer("output_type")
    def _output_type_name(self, output_type: type[BaseModel] | None) -> str | None:
        if output_type is None:
            return None
        return f"{output_type.__module__}.{output_type.__qualname__}"


class ClearConversationCommand(Command):
    """Forget a conversation's history (its system prompt stays)."""

    conversation_id: str = "default"


class SetSystemPromptCommand(Command):
    """Set (or with ``None`` remove) the system prompt of a conversation."""

    system_prompt: str | None
    conversation_id: str = "default"
