"""The OpenAI provider: the official SDK's Chat Completions, for OpenAI and compatible servers."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from llmgine.errors import (
    MissingAPIKeyError,
    ProviderAuthenticationError,
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimitError,
)
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import ChatMessage, Completion, LLMRequest, StreamChunk, ToolCall, Usage

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["OpenAIProvider", "redact"]

_KEY_LIKE = re.compile(r"\b(sk|key)-[A-Za-z0-9_\-*]{6,}")
_NO_KEY_NEEDED = "llmgine-no-key"


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Return ``text`` with the given secrets and anything shaped like an API key masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _KEY_LIKE.sub("[redacted]", text)


def _message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    return Usage(
        input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
        output_tokens=getattr(usage, "completion_tokens", 0) or 0,
    )


class OpenAIProvider(Provider):
    """Chat Completions through the official ``openai`` SDK (``AsyncOpenAI``).

    Works with OpenAI and with any compatible server (vLLM, Ollama, llama.cpp)
    through ``base_url``. Retries and timeouts are the SDK's.

    Args:
        model: The model name, e.g. ``"gpt-4o-mini"``.
        api_key: Defaults to ``OPENAI_API_KEY``. A compatible server given by
            ``base_url`` may need none.
        base_url: Defaults to ``OPENAI_BASE_URL``, else OpenAI's API.
        timeout: Seconds per request (the SDK's default when ``None``).
        max_retries: Retries of failed requests (429, 5xx, connection errors).
        client: An ``AsyncOpenAI`` client to use as is.

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
        max_retries: int = 2,
        client: AsyncOpenAI | None = None,
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
        self._secrets = (api_key,) if api_key else ()
        self.base_url = base_url
        if client is None:
            from openai import AsyncOpenAI

            options: dict[str, Any] = {"max_retries": max_retries}
            if timeout is not None:
                options["timeout"] = timeout
            client = AsyncOpenAI(api_key=api_key or _NO_KEY_NEEDED, base_url=base_url, **options)
        self._client = client

    def __repr__(self) -> str:  # never shows the key
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"OpenAIProvider(model={self.model!r}{where})"

    def _arguments(self, request: LLMRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "model": request.model,
            "messages": [_message(m) for m in request.messages],
        }
        if request.tools:
            arguments["tools"] = request.tools
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        if request.max_tokens is not None:
            # OpenAI's own API wants max_completion_tokens; compatible servers know max_tokens.
            key = "max_tokens" if self.base_url else "max_completion_tokens"
            arguments[key] = request.max_tokens
        return arguments

    async def complete(self, request: LLMRequest) -> Completion:
        """Send one Chat Completions request."""
        try:
            response = await self._client.chat.completions.create(**self._arguments(request))
        except Exception as exc:
            raise self._error(exc) from None
        if not response.choices:
            raise ProviderError(f"openai: the response to {request.model} had no choices.")
        choice = response.choices[0]
        calls = [
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
            for c in choice.message.tool_calls or []
            if getattr(c, "function", None) is not None
        ]
        return Completion(
            content=choice.message.content,
            tool_calls=calls,
            finish_reason=choice.finish_reason,
            usage=_usage(response.usage),
            model=response.model,
        )

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream one Chat Completions request, assembling tool calls split across chunks."""
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish_reason: str | None = None
        usage: Usage = Usage()
        model: str | None = None
        try:
            stream = await self._client.chat.completions.create(
                **self._arguments(request), stream=True, stream_options={"include_usage": True}
            )
            async for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        yield StreamChunk(delta=delta.content)
                    for call in delta.tool_calls or []:
                        slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = call.id or slot["id"]
                        if call.function is not None:
                            slot["name"] += call.function.name or ""
                            slot["arguments"] += call.function.arguments or ""
                    finish_reason = choice.finish_reason or finish_reason
        except Exception as exc:
            raise self._error(exc) from None
        tool_calls = [
            ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"] or "{}")
            for _, c in sorted(calls.items())
        ]
        completion = Completion(
            content="".join(text) or None,
            tool_calls=tool_calls,
            finish_reason=finish_reason,
            usage=usage,
            model=model,
        )
        yield StreamChunk(completion=completion)

    def _error(self, exc: Exception) -> Exception:
        """Turn an SDK exception into a readable ``ProviderError`` that holds no secret."""
        import openai

        body = getattr(exc, "body", None)
        raw = body.get("message") if isinstance(body, dict) else None
        detail = redact(str(raw or getattr(exc, "message", None) or exc), self._secrets).rstrip(".")
        status = getattr(exc, "status_code", None)
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ProviderAuthenticationError(
                f"openai rejected the API key ({status}): {detail}. Check OPENAI_API_KEY."
            )
        if isinstance(exc, openai.RateLimitError):
            return ProviderRateLimitError(
                f"openai is rate limiting this key (429): {detail}. Wait and retry, or check "
                "the account's quota."
            )
        if isinstance(exc, openai.APITimeoutError):
            return ProviderConnectionError(f"openai did not answer in time: {detail}.")
        if isinstance(exc, openai.APIConnectionError):
            where = self.base_url or "api.openai.com"
            return ProviderConnectionError(
                f"openai could not be reached at {where}: {detail}. Check the network or base_url."
            )
        if isinstance(exc, openai.APIStatusError):
            return ProviderError(f"openai answered {status}: {detail}")
        if isinstance(exc, openai.OpenAIError):
            return ProviderError(f"openai: {detail}")
        return exc
