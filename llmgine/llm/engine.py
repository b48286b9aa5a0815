"""The LLM engine: a command handler turning prompts into provider calls, tool runs and events."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from uuid import UUID

from llmgine.bus.bus import MessageBus
from llmgine.errors import BusStateError, CommandFailedError, ProviderError, ToolError
from llmgine.llm.commands import ClearConversationCommand, PromptCommand, SetSystemPromptCommand
from llmgine.llm.context import ConversationStore
from llmgine.llm.events import LLMDeltaEvent, LLMResponseEvent, ToolCallEvent, ToolResultEvent
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.resolve import provider_for
from llmgine.llm.tools import Tool, ToolRegistry
from llmgine.llm.types import ChatMessage, Completion, LLMRequest, ToolCall, Usage
from llmgine.messages.commands import CommandResult
from llmgine.observability.events import Metric, MetricEvent
from llmgine.observability.jsonsafe import json_safe

__all__ = ["LLMEngine"]

logger = logging.getLogger(__name__)


def _tool_content(value: Any) -> str:
    """A tool's result as text for the model; never raises (odd file names, bytes, cycles)."""
    safe = json_safe(value)
    return safe if isinstance(safe, str) else json.dumps(safe, ensure_ascii=False)


class LLMEngine:
    """Handles ``PromptCommand`` on a bus: conversations, provider calls, tools, events.

    ``(await bus.execute(PromptCommand(prompt="hi"))).result`` is the assistant's
    final text. Each provider call is an ``LLM`` span and each tool run a ``TOOL``
    span (OpenTelemetry GenAI attribute names), children of the command's span;
    each call publishes an ``LLMResponseEvent`` and token/latency metrics, each
    tool a ``ToolCallEvent`` and a ``ToolResultEvent``.

    Args:
        bus: The bus to register the handlers on.
        model: A model string (``"offline"``, ``"openai:gpt-4o-mini"``, ...); ``None``
            means the default (``LLMGINE_MODEL``, else OpenAI with a key, else offline).
            With ``provider``, the model name sent to that provider.
        provider: A provider instance to use instead of one built from ``model``.
        system_prompt: The system prompt of new conversations.
        tools: Functions (or ``Tool``s) the model may call.
        max_tool_rounds: Rounds of tool calls per prompt before the engine stops
            and says so in the result.
        max_history: Messages kept per conversation.
    """

    def __init__(
        self,
        bus: MessageBus,
        model: str | None = None,
        provider: Provider | None = None,
        system_prompt: str | None = None,
        tools: Iterable[Callable[..., Any] | Tool] = (),
        *,
        max_tool_rounds: int = 5,
        max_history: int = 100,
    ) -> None:
        if max_tool_rounds < 0:
            raise ValueError(f"max_tool_rounds must be 0 or more; got {max_tool_rounds}.")
        self.bus = bus
        if provider is None:
            provider = provider_for(model)
        elif model is not None:
            provider.model = model
        self.provider = provider
        self.tools = ToolRegistry(tools)
        self.conversations = ConversationStore(system_prompt, max_history)
        self.max_tool_rounds = max_tool_rounds
        self._providers: dict[str, Provider] = {}
        self._sinks: dict[UUID, asyncio.Queue[str | None]] = {}
        self._register(bus)

    def _register(self, bus: MessageBus) -> None:
        """Become the bus's engine; a second engine on a bus replaces the first, loudly."""
        current = bus.command_handler_of(PromptCommand)
        replaced = getattr(current, "__self__", None)
        if current is not None and replaced is not self:
            logger.warning(
                "A second LLMEngine on this bus replaces %r: prompts now go to the new engine "
                "(%s). Use one engine per bus, or a bus of its own for each.",
                replaced if replaced is not None else current,
                self.model,
            )
        bus.register_command_handler(PromptCommand, self.handle_prompt, replace=True)
        bus.register_command_handler(ClearConversationCommand, self.handle_clear, replace=True)
        bus.register_command_handler(
            SetSystemPromptCommand, self.handle_system_prompt, replace=True
        )

    def _check_registered(self) -> None:
        if self.bus.command_handler_of(PromptCommand) != self.handle_prompt:
            raise BusStateError(
                f"This engine ({self.model}) no longer answers prompts on its bus: another "
                "LLMEngine replaced it there. Use that engine, or give each engine its own bus."
            )

    def __repr__(self) -> str:
        tools = ", ".join(t.name for t in self.tools) or "no tools"
        return f"<LLMEngine {self.provider.name}:{self.provider.model} ({tools})>"

    @property
    def model(self) -> str:
        """The current model as a model string, e.g. ``"offline"`` or ``"openai:gpt-4o-mini"``."""
        if self.provider.name == "offline" and self.provider.model == "offline":
            return "offline"
        return f"{self.provider.name}:{self.provider.model}"

    def set_model(self, model: str) -> None:
        """Switch the engine to another model string; conversations are kept."""
        self.provider = provider_for(model)

    def register_tool(self, fn: Callable[..., Any] | Tool) -> Tool:
        """Offer ``fn`` to the model as a tool; returns its :class:`Tool`."""
        return self.tools.register(fn)

    def tool(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator form of :meth:`register_tool`; the function is returned unchanged."""
        self.register_tool(fn)
        return fn

    # ------------------------------------------------------------ convenience

    async def chat(self, prompt: str, **options: Any) -> str:
        """Send ``prompt`` through the bus and return the reply text.

        ``options`` are ``PromptCommand`` fields (``conversation_id``, ``model``, ...).

        Raises:
            CommandFailedError: The prompt failed; its ``result`` holds the details.
            BusStateError: Another engine replaced this one on the bus.
        """
        self._check_registered()
        result = await self.bus.execute(PromptCommand(prompt=prompt, **options))
        return self._text(result)

    async def stream(self, prompt: str, **options: Any) -> AsyncIterator[str]:
        """Send ``prompt`` through the bus and yield the reply's text as it arrives.

        Stopping the iteration early cancels the generation.

        Raises:
            CommandFailedError: The prompt failed.
            BusStateError: Another engine replaced this one on the bus.
        """
        self._check_registered()
        command = PromptCommand(prompt=prompt, stream=True, **options)
        sink: asyncio.Queue[str | None] = asyncio.Queue()
        self._sinks[command.id] = sink

        async def run() -> CommandResult:
            try:
                return await self.bus.execute(command)
            finally:
                sink.put_nowait(None)

        task = asyncio.ensure_future(run())
        try:
            while (delta := await sink.get()) is not None:
                yield delta
            self._text(await task)
        finally:
            self._sinks.pop(command.id, None)
            if not task.done():
                task.cancel()

    @staticmethod
    def _text(result: CommandResult) -> str:
        if not result.success:
            raise CommandFailedError(f"The prompt failed: {result.error}", result)
        return str(result.result)

    # --------------------------------------------------------------- handlers

    async def handle_clear(self, command: ClearConversationCommand) -> bool:
        """Forget a conversation's history; the result says whether it existed."""
        return self.conversations.clear(command.conversation_id)

    async def handle_system_prompt(self, command: SetSystemPromptCommand) -> None:
        """Set the system prompt of a conversation."""
        self.conversations.get(command.conversation_id).system_prompt = command.system_prompt

    async def handle_prompt(self, command: PromptCommand) -> CommandResult:
        """Run one prompt: provider calls and tool rounds until the model answers in text."""
        provider = self._provider(command.model)
        conversation = self.conversations.get(command.conversation_id)
        conversation.append(ChatMessage(role="user", content=command.prompt))
        tools = self.tools.definitions() if command.use_tools else []
        usage = Usage()
        for round_ in range(self.max_tool_rounds + 1):
            completion = await self._call(provider, conversation.request_messages(), tools, command)
            usage = Usage(
                input_tokens=usage.input_tokens + completion.usage.input_tokens,
                output_tokens=usage.output_tokens + completion.usage.output_tokens,
            )
            conversation.append(
                ChatMessage(
                    role="assistant", content=completion.content, tool_calls=completion.tool_calls
                )
            )
            if not completion.tool_calls:
                text = completion.content or ""
                break
            if round_ == self.max_tool_rounds:
                text = self._stop_tool_rounds(completion, conversation.append)
                break
            results = await asyncio.gather(
                *(self._run_tool(call, command) for call in completion.tool_calls)
            )
            for call, content in zip(completion.tool_calls, results, strict=True):
                conversation.append(
                    ChatMessage(role="tool", tool_call_id=call.id, name=call.name, content=content)
                )
        return CommandResult(
            success=True,
            result=text,
            metadata={
                "model": completion.model or provider.model,
                "provider": provider.name,
                "rounds": round_ + 1,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
            },
        )

    def _stop_tool_rounds(
        self, completion: Completion, append: Callable[[ChatMessage], None]
    ) -> str:
        note = (
            f"[Stopped after {self.max_tool_rounds} rounds of tool calls: the model still asked "
            f"for {', '.join(c.name for c in completion.tool_calls)}. Raise max_tool_rounds "
            "on the LLMEngine to allow more.]"
        )
        # Every tool call needs an answer, or the next request of this conversation is invalid.
        for call in completion.tool_calls:
            append(
                ChatMessage(
                    role="tool",
                    tool_call_id=call.id,
                    name=call.name,
                    content="Not run: the tool round limit was reached.",
                )
            )
        append(ChatMessage(role="assistant", content=note))
        return f"{completion.content}\n\n{note}" if completion.content else note

    def _provider(self, model: str | None) -> Provider:
        if model is None:
            return self.provider
        provider = self._providers.get(model)
        if provider is None:
            provider = self._providers[model] = provider_for(model)
        return provider

    async def _call(
        self,
        provider: Provider,
        messages: list[ChatMessage],
        tools: list[dict[str, Any]],
        command: PromptCommand,
    ) -> Completion:
        request = LLMRequest(
            model=provider.model,
            messages=messages,
            tools=tools,
            temperature=command.temperature,
            max_tokens=command.max_tokens,
        )
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider.name,
            "gen_ai.request.model": provider.model,
            "gen_ai.conversation.id": command.conversation_id,
        }
        if command.temperature is not None:
            attributes["gen_ai.request.temperature"] = command.temperature
        if command.max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = command.max_tokens
        async with self.bus.span(f"chat {provider.model}", kind="LLM", **attributes) as span:
            start = time.perf_counter()
            if command.stream:
                completion = await self._stream(provider, request, command)
            else:
                completion = await provider.complete(request)
            latency_ms = (time.perf_counter() - start) * 1000.0
            model = completion.model or provider.model
            span.set_attribute("gen_ai.response.model", model)
            span.set_attribute(
                "gen_ai.response.finish_reasons",
                [completion.finish_reason] if completion.finish_reason else [],
            )
            span.set_attribute("gen_ai.usage.input_tokens", completion.usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", completion.usage.output_tokens)
            await self.bus.publish(
                LLMResponseEvent(
                    conversation_id=command.conversation_id,
                    prompt_id=command.id,
                    content=completion.content,
                    model=model,
                    provider=provider.name,
                    finish_reason=completion.finish_reason,
                    usage=completion.usage,
                    latency_ms=latency_ms,
                    tool_calls=completion.tool_calls,
                    tool_call_count=len(completion.tool_calls),
                )
            )
            tags = {"provider": provider.name, "model": model}
            await self.bus.publish(
                MetricEvent(
                    metrics=[
                        Metric(
                            name="gen_ai.usage.input_tokens",
                            value=completion.usage.input_tokens,
                            unit="tokens",
                            tags=tags,
                        ),
                        Metric(
                            name="gen_ai.usage.output_tokens",
                            value=completion.usage.output_tokens,
                            unit="tokens",
                            tags=tags,
                        ),
                        Metric(name="llm.latency_ms", value=latency_ms, unit="ms", tags=tags),
                    ]
                )
            )
        return completion

    async def _stream(
        self, provider: Provider, request: LLMRequest, command: PromptCommand
    ) -> Completion:
        sink = self._sinks.get(command.id)
        completion: Completion | None = None
        async for chunk in provider.stream(request):
            if chunk.delta:
                if sink is not None:
                    sink.put_nowait(chunk.delta)
                await self.bus.publish(
                    LLMDeltaEvent(
                        conversation_id=command.conversation_id,
                        prompt_id=command.id,
                        delta=chunk.delta,
                    )
                )
            if chunk.completion is not None:
                completion = chunk.completion
        if completion is None:
            raise ProviderError(f"{provider.name}: the stream ended without a final answer.")
        return completion

    async def _run_tool(self, call: ToolCall, command: PromptCommand) -> str:
        """Run one tool call; any failure becomes an error text for the model, never a crash."""
        ids = {"conversation_id": command.conversation_id, "prompt_id": command.id}
        await self.bus.publish(
            ToolCallEvent(**ids, call_id=call.id, tool_name=call.name, arguments=call.arguments)
        )
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.id,
            "gen_ai.tool.type": "function",
        }
        value: Any = None
        error: str | None = None
        start = time.perf_counter()
        async with self.bus.span(f"execute_tool {call.name}", kind="TOOL", **attributes) as span:
            tool = self.tools.get(call.name)
            try:
                if tool is None:
                    available = ", ".join(t.name for t in self.tools) or "none"
                    raise ToolError(f"unknown tool {call.name!r}; available tools: {available}")
                value = await tool.run(call.arguments)
            except ToolError as exc:
                error = str(exc)
            except Exception as exc:
                error = f"{call.name} raised {type(exc).__name__}: {exc}"
                logger.info(
                    "Tool %s failed; the error goes back to the model", call.name, exc_info=exc
                )
            if error is not None:
                span.set_status("ERROR", error)
            await self.bus.publish(
                ToolResultEvent(
                    **ids,
                    call_id=call.id,
                    tool_name=call.name,
                    result=value,
                    error=error,
                    duration_ms=(time.perf_counter() - start) * 1000.0,
                )
            )
        return f"Error: {error}" if error is not None else _tool_content(value)
