"""The OpenAI provider's streamed answers: chunks assembled, a broken stream an error.

A stream is whole when the server has said why the answer ended (a ``finish_reason``).
One that stops before, or a 200 whose body is no event stream at all (a proxy's login
page, a cut JSON body), is no answer: taking the text so far as the answer would keep a
cut sentence in the conversation as if the model had finished it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from llmgine.errors import ProviderConnectionError, ProviderError
from llmgine.llm.providers.base import estimate_usage, word_chunks
from llmgine.llm.providers.openai_wire import completion_of, start_of, usage_of
from llmgine.llm.types import Completion, LLMRequest, StreamChunk, ToolCall, Usage

__all__ = ["answer_chunks"]

_EVENT_STREAM = "text/event-stream"


class _Answer:
    """A streamed answer as it arrives: text, tool calls split across chunks, usage."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.events = 0

    def add(self, chunk: Any) -> list[str]:
        """Take one chunk in; return its text deltas."""
        self.events += 1
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = usage_of(chunk.usage)
        deltas: list[str] = []
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                self.text.append(delta.content)
                deltas.append(delta.content)
            for call in delta.tool_calls or []:
                slot = self.calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] = call.id or slot["id"]
                if call.function is not None:
                    slot["name"] = join_name(slot["name"], call.function.name)
                    slot["arguments"] += call.function.arguments or ""
            self.finish_reason = choice.finish_reason or self.finish_reason
        return deltas

    def completion(self, request: LLMRequest) -> Completion:
        tool_calls = [
            ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"] or "{}")
            for i, c in sorted(self.calls.items())
        ]
        completion = Completion(
            content="".join(self.text) or None,
            tool_calls=tool_calls,
            finish_reason=self.finish_reason,
            model=self.model,
        )
        usage = self.usage or estimate_usage(request, completion)
        return completion.model_copy(update={"usage": usage})


async def answer_chunks(
    stream: Any,
    request: LLMRequest,
    *,
    where: str,
    secrets: tuple[str, ...],
    error: Callable[[Exception], Exception],
) -> AsyncIterator[StreamChunk]:
    """The text deltas of ``create(stream=True)``'s ``stream``, then the whole completion.

    Args:
        stream: What ``chat.completions.create(stream=True)`` returned.
        request: The request streamed (its model is named in errors).
        where: The server, as shown (no credentials).
        secrets: Strings never to show, should the body echo them.
        error: Turns an SDK exception raised while reading into llmgine's error.

    Raises:
        ProviderConnectionError: The stream ended before the server gave a
            ``finish_reason``: the connection was cut or the server stopped.
        ProviderError: The server answered with something that is not an event
            stream, or sent an event that is not JSON.
    """
    answer = _Answer()
    try:
        body = await _body_if_not_events(stream)
        async for chunk in stream:
            for delta in answer.add(chunk):
                yield StreamChunk(delta=delta)
    except ProviderError:
        raise
    except json.JSONDecodeError:  # an event's data is not JSON (the SDK's json.loads)
        raise ProviderError(
            f"openai at {where} sent {request.model}'s stream an event that is not JSON; "
            "check that base_url points at an OpenAI-compatible API (it usually ends in /v1)."
        ) from None
    except Exception as exc:
        raise error(exc) from None
    if answer.finish_reason is None:
        if body is not None and not answer.events:
            for chunk in _not_a_stream(body, request, where=where, secrets=secrets):
                yield chunk
            return
        raise _cut(answer, request, where)
    yield StreamChunk(completion=answer.completion(request))


async def _body_if_not_events(stream: Any) -> bytes | None:
    """The body of an answer typed as something else than an event stream, read; else ``None``.

    The SDK reads such a body as events all the same (and it finds none in an HTML
    page); read first, the body stays readable by the SDK and can be shown in an error.
    An answer with no ``Content-Type`` is streamed as it comes (minimal servers leave it
    out), and so is a stream object without ``response`` (wrapped by a tracing library).
    """
    response = getattr(stream, "response", None)
    headers = getattr(response, "headers", None)
    if response is None or headers is None:
        return None
    content_type = str(headers.get("content-type") or "").lower()
    if not content_type or _EVENT_STREAM in content_type:
        return None
    try:
        content = await response.aread()
    except Exception as exc:  # as the SDK turns its HTTP library's errors while it reads
        import openai

        request = response.request
        if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
            raise openai.APITimeoutError(request=request) from exc
        raise openai.APIConnectionError(message=str(exc), request=request) from exc
    return content if isinstance(content, bytes) else None


def _not_a_stream(
    body: bytes, request: LLMRequest, *, where: str, secrets: tuple[str, ...]
) -> list[StreamChunk]:
    """The answer of a server that answered a streamed request in one JSON piece.

    Raises:
        ProviderError: The body is not a whole Chat Completion either (what came back
            is shown, secrets masked).
    """
    try:
        completion, usage = completion_of(body, model=request.model, where=where, secrets=secrets)
    except ProviderError:
        completion = None
    if completion is None or completion.finish_reason is None:
        raise ProviderError(
            f"openai at {where} answered the streamed request for {request.model} with "
            f"something that is not an event stream ({start_of(body, secrets)}); check that "
            "base_url points at an OpenAI-compatible API (it usually ends in /v1) and that "
            "no proxy answers in its place."
        )
    completion.usage = usage_of(usage) or estimate_usage(request, completion)
    pieces = [StreamChunk(delta=piece) for piece in word_chunks(completion.content or "")]
    return [*pieces, StreamChunk(completion=completion)]


def _cut(answer: _Answer, request: LLMRequest, where: str) -> ProviderConnectionError:
    """The error of a stream that ended before the server said the answer was finished."""
    got = len("".join(answer.text))
    if answer.events == 0:
        what = "before any chunk of the answer"
    else:
        calls = f" and {len(answer.calls)} tool call(s)" if answer.calls else ""
        what = f"after {got} character(s){calls} but before its finish_reason"
    return ProviderConnectionError(
        f"openai at {where} ended the stream of {request.model}'s answer {what}: the "
        "connection was cut or the server stopped, so the answer is incomplete and was not "
        "kept. The server may have crashed or restarted; check its log."
    )


def join_name(so_far: str, piece: str | None) -> str:
    """Add a streamed tool name piece; some servers (llama.cpp) repeat the whole name each chunk."""
    if not piece or piece == so_far:
        return so_far
    return piece if not so_far or piece.startswith(so_far) else so_far + piece
