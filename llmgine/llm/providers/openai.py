"""The OpenAI provider: the official SDK's Chat Completions, for OpenAI and compatible servers."""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import AsyncIterator
from types import FunctionType
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

from llmgine._urls import hide_in_loggers, redact_url, url_secrets
from llmgine.errors import ConfigurationError, MissingAPIKeyError, ProviderError
from llmgine.llm.providers.base import Capabilities, Provider, estimate_usage
from llmgine.llm.providers.openai_errors import key_secrets, provider_error, redact
from llmgine.llm.providers.openai_stream import answer_chunks
from llmgine.llm.providers.openai_wire import completion_of, request_parts, usage_of
from llmgine.llm.types import ChatMessage, Completion, LLMRequest, StreamChunk, ToolCall

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["OpenAIProvider", "redact", "safe_url"]

logger = logging.getLogger(__name__)

_NO_KEY_NEEDED = "llmgine-no-key"
_TOOL_CHOICES = ("auto", "none", "required")
StructuredMode = Literal["json_schema", "json_object", "prompt"]
_MODES: tuple[StructuredMode, ...] = ("json_schema", "json_object", "prompt")

_URL_LOGGERS = ("httpx", "httpx2", "openai", "openai._base_client")
"""Loggers that may write the server's URL as it is ("HTTP Request: POST http://u:pw@...")."""


safe_url = redact_url
"""``url`` with its credentials hidden: :func:`llmgine._urls.redact_url` (kept by this name)."""


def _message(message: ChatMessage) -> dict[str, Any]:
    # Servers reject "content": null (llama.cpp answers 500) and a missing content; "" is accepted.
    out: dict[str, Any] = {"role": message.role, "content": message.content or ""}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


class OpenAIProvider(Provider):
    """Chat Completions through the official ``openai`` SDK (``AsyncOpenAI``).

    Works with OpenAI and with any compatible server (vLLM, Ollama, llama.cpp)
    through ``base_url``. Structured output uses the server's JSON-schema mode
    (``response_format``; llama.cpp turns it into a grammar). Servers that report
    no token usage get an estimate, marked ``usage.estimated``. Unstreamed answers
    are sent with the SDK's ``client.post`` (its key, base URL, retries, timeouts and
    errors) and read from their JSON, skipping ``create()``'s request transform and
    response models, most of its CPU a request; streams go through ``create()``.

    Args:
        model: The model name, e.g. ``"gpt-4o-mini"``.
        api_key: Defaults to ``OPENAI_API_KEY``. A compatible server given by
            ``base_url`` may need none.
        base_url: Defaults to ``OPENAI_BASE_URL``, else OpenAI's API.
        timeout: Seconds one request may take at most; the prompt's time left bounds it
            too. ``None``: the prompt's time left alone (or the SDK's default).
        max_retries: The ``openai`` SDK's own retries; 0 by default, as the engine retries
            (``LLMEngine(retries=...)``: honouring ``Retry-After``, each retry in the log).
        client: An ``AsyncOpenAI`` client to use as is.
        structured_output: How to ask for structured output: ``"json_schema"``
            (OpenAI's ``response_format``), ``"json_object"`` (``{"type":
            "json_object", "schema": ...}``, llama-cpp-python's form), ``"prompt"``
            (JSON asked for in the prompt, for servers with neither), or ``None``
            (the default): try ``json_schema``, and on a server that rejects it,
            ``json_object``, then the prompt; the first that works is kept. The
            prompt is the engine's to write: this provider only says, through
            :attr:`capabilities`, that the server has no JSON-schema mode.

    Raises:
        MissingAPIKeyError: No key was given or found, and no ``base_url`` either.
    """

    name = "openai"

    def __init__(
        self,
        model: str = "gpt-4o-mini",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int = 0,
        client: AsyncOpenAI | None = None,
        structured_output: StructuredMode | None = None,
    ) -> None:
        super().__init__(model)
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        if client is None and not api_key and base_url is None:
            raise MissingAPIKeyError(
                "The openai provider needs an API key: set the OPENAI_API_KEY environment "
                "variable (or pass api_key=...). To run without a key, use the offline model: "
                'model="offline".'
            )
        in_url = url_secrets(base_url) if base_url else []
        self._secrets = key_secrets(api_key) + tuple(in_url)
        if in_url:  # httpx logs each request's URL ("HTTP Request: POST http://u:pw@...")
            hide_in_loggers(_URL_LOGGERS, in_url)
        self.base_url = base_url
        self._timeout = timeout
        if structured_output not in (None, *_MODES):
            raise ConfigurationError(
                f"structured_output must be one of {', '.join(map(repr, _MODES))} or None; "
                f"got {structured_output!r}."
            )
        self.structured_output: StructuredMode = structured_output or "json_schema"
        """The structured-output mode in use (it may change once when ``None`` was given)."""
        self._detect_mode = structured_output is None
        if client is None:
            from openai import AsyncOpenAI

            options: dict[str, Any] = {"max_retries": max_retries}
            if timeout is not None:
                options["timeout"] = timeout
            client = AsyncOpenAI(api_key=api_key or _NO_KEY_NEEDED, base_url=base_url, **options)
        self._client = client

    def __repr__(self) -> str:  # never shows the key, nor credentials in the URL
        where = f", base_url={redact_url(self.base_url)!r}" if self.base_url else ""
        return f"OpenAIProvider(model={self.model!r}{where})"

    async def aclose(self) -> None:
        """Close the SDK client's connections (kept alive between requests)."""
        await self._client.close()

    @property
    def endpoint(self) -> str:
        """The server's ``host:port/path`` (no credentials), from ``base_url`` or the client.

        Part of the call cache's key: two servers, or two paths of one gateway, are two
        models even when they share a model name.
        """
        base = self.base_url or str(getattr(self._client, "base_url", "") or "")
        return _endpoint_of(base)

    @property
    def _where(self) -> str:
        return redact_url(self.base_url) if self.base_url else "api.openai.com"

    def _arguments(self, request: LLMRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = dict(request.options)
        arguments["model"] = request.model
        arguments["messages"] = [_message(m) for m in request.messages]
        if request.tools:
            arguments["tools"] = request.tools
            if request.tool_choice is not None:
                arguments["tool_choice"] = (
                    request.tool_choice
                    if request.tool_choice in _TOOL_CHOICES
                    else {"type": "function", "function": {"name": request.tool_choice}}
                )
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        if request.max_tokens is not None:
            # OpenAI's own API wants max_completion_tokens; compatible servers know max_tokens.
            key = "max_tokens" if self.base_url else "max_completion_tokens"
            arguments[key] = request.max_tokens
        if request.output_schema is not None and self.structured_output == "json_schema":
            arguments["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": _schema_name(request.output_schema),
                    "schema": request.output_schema,
                },
            }
        elif request.output_schema is not None and self.structured_output == "json_object":
            arguments["response_format"] = {"type": "json_object", "schema": request.output_schema}
        if request.timeout is not None:
            own = self._timeout
            arguments["timeout"] = request.timeout if own is None else min(own, request.timeout)
        return arguments

    @property
    def capabilities(self) -> Capabilities:
        """A JSON-schema mode unless the mode is ``"prompt"``; usage in streams."""
        return Capabilities(json_schema=self.structured_output != "prompt", stream_usage=True)

    async def _create(self, arguments: dict[str, Any], *, post: bool = False) -> Any:
        """Send ``arguments``: by ``create()``, or (``post``) as JSON, answered as bytes.

        A server that rejects ``response_format`` gets the next mode (see ``__init__``).
        """
        while True:
            try:
                if post:
                    return await self._post(arguments)
                return await self._create_once(arguments)
            except Exception as exc:
                if not self._rejects_response_format(arguments, exc):
                    raise
                response_format = arguments["response_format"]
                sent = response_format.get("type") if isinstance(response_format, dict) else None
                if sent not in _MODES[:2]:  # the caller's own response_format: theirs to fix
                    raise
                if sent == self.structured_output:  # else a request beside it moved on already
                    following = _MODES[_MODES.index(sent) + 1]
                    logger.info(
                        "%s rejected response_format %s; using %s", self._where, sent, following
                    )
                    self.structured_output = following
                if self.structured_output == "prompt":
                    # Said by capabilities; the engine sends the request again, prompted.
                    raise ProviderError(
                        f"openai at {self._where} takes no response_format (json_schema nor "
                        'json_object); ask for JSON in the prompt (structured_output="prompt").'
                    ) from None
                if _MODES.index(self.structured_output) <= _MODES.index(sent):
                    raise  # not a question of mode
                arguments["response_format"] = {
                    "type": "json_object",
                    "schema": _schema_of(arguments["response_format"]),
                }

    def _rejects_response_format(self, arguments: dict[str, Any], exc: Exception) -> bool:
        import openai

        return (
            self._detect_mode
            and "response_format" in arguments
            and isinstance(exc, openai.APIStatusError)
            and exc.status_code in (400, 422, 500)
            and "response_format" in str(exc)
        )

    async def _post(self, arguments: dict[str, Any]) -> bytes:
        """``create()``'s request through ``client.post``: no request transform, no models.

        The SDK still adds the key, the base URL, retries and the timeout, and raises its
        ``APIStatusError`` for a non-2xx answer before the body is read.
        """
        body, options = request_parts(arguments)
        return await self._client.post(
            "/chat/completions", body=body, options=cast(Any, options), cast_to=bytes
        )

    async def _create_once(self, arguments: dict[str, Any]) -> Any:
        try:
            return await self._client.chat.completions.create(**arguments)
        except TypeError as exc:
            if "unexpected keyword argument" not in str(exc):
                raise
            raise ConfigurationError(
                f"openai: {str(exc).partition('create() ')[2] or exc}: this option is not a "
                "Chat Completions parameter; put server-specific fields under "
                'options={"extra_body": {...}}.'
            ) from None

    async def complete(self, request: LLMRequest) -> Completion:
        """Send one Chat Completions request."""
        if not _sdk_create_is_plain(self._client):  # instrumented (OpenTelemetry, Langfuse)
            return await self._complete_by_create(request)
        try:
            content = await self._create(self._arguments(request), post=True)
        except (ConfigurationError, ProviderError):
            raise
        except Exception as exc:
            raise self._error(exc) from None
        completion, usage = completion_of(
            content, model=request.model, where=self._where, secrets=self._secrets
        )
        completion.usage = usage_of(usage) or estimate_usage(request, completion)
        return completion

    async def _complete_by_create(self, request: LLMRequest) -> Completion:
        """:meth:`complete` through ``chat.completions.create()``, for a wrapped ``create``."""
        try:
            response = await self._create(self._arguments(request))
        except (ConfigurationError, ProviderError):
            raise
        except Exception as exc:
            raise self._error(exc) from None
        if not response.choices:
            raise ProviderError(f"openai: the response to {request.model} had no choices.")
        choice = response.choices[0]
        completion = Completion(
            content=choice.message.content,
            tool_calls=[
                ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
                for c in choice.message.tool_calls or []
                if getattr(c, "function", None) is not None
            ],
            finish_reason=choice.finish_reason,
            model=response.model,
        )
        completion.usage = usage_of(response.usage) or estimate_usage(request, completion)
        return completion

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream one Chat Completions request, assembling tool calls split across chunks.

        Raises:
            ProviderConnectionError: The stream ended before the server gave a
                ``finish_reason`` (cut): the text so far is no answer.
            ProviderError: The server answered with something that is not an event stream.
        """
        try:
            streaming = {"stream": True, "stream_options": {"include_usage": True}}
            stream = await self._create({**self._arguments(request), **streaming})
        except (ConfigurationError, ProviderError):
            raise
        except Exception as exc:
            raise self._error(exc) from None
        chunks = answer_chunks(
            stream,
            request,
            where=self._where,
            secrets=self._secrets,
            error=functools.partial(self._error, during_answer=True),
        )
        async for chunk in chunks:
            yield chunk

    def _error(self, exc: Exception, *, during_answer: bool = False) -> Exception:
        """Turn an SDK exception into a short, readable ``ProviderError`` that holds no secret."""
        return provider_error(
            exc, where=self._where, secrets=self._secrets, during_answer=during_answer
        )


def _sdk_create_is_plain(client: Any) -> bool:
    """Whether ``client.chat.completions.create`` is the SDK's own, not wrapped by anyone.

    Tracing libraries wrap it (``wrapt`` or ``functools.wraps``); a request sent by
    ``client.post`` would go past them, so a wrapped ``create`` is called instead.
    """
    completions = client.chat.completions
    if "create" in vars(completions):
        return False
    create = getattr(type(completions), "create", None)
    code = getattr(create, "__code__", None)
    return (
        type(create) is FunctionType
        and code is not None
        and code.co_filename.startswith(_sdk_folder())
    )


@functools.cache
def _sdk_folder() -> str:
    import openai

    return os.path.dirname(openai.__file__) + os.sep


def _schema_of(response_format: dict[str, Any]) -> Any:
    if "json_schema" in response_format:
        return response_format["json_schema"]["schema"]
    return response_format.get("schema")


def _schema_name(schema: dict[str, Any]) -> str:
    """A ``response_format`` name from the schema's title: letters, digits, ``_`` and ``-``."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "output"))
    return name[:64] or "output"


@functools.lru_cache(maxsize=64)
def _endpoint_of(base: str) -> str:
    """``host:port/path`` of a base URL (no credentials); read for every cached call."""
    if not base:
        return "api.openai.com"
    parts = urlsplit(base)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # not a number: the SDK will say so when it connects
        port = None
    where = f"{host}:{port}" if port else host
    return where + parts.path.rstrip("/")
