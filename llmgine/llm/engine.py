"""The LLM engine: a command handler turning prompts into provider calls, tool runs and events."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload
from uuid import UUID

from pydantic import BaseModel

from llmgine.bus.bus import MessageBus
from llmgine.errors import (
    BusStateError,
    CommandFailedError,
    ConfigurationError,
    ProviderError,
    ProviderTimeoutError,
    StructuredOutputError,
    ToolError,
)
from llmgine.llm.approval import ToolApprovals
from llmgine.llm.commands import ClearConversationCommand, PromptCommand, SetSystemPromptCommand
from llmgine.llm.context import ConversationStore
from llmgine.llm.events import ToolCallEvent, ToolResultEvent
from llmgine.llm.mcp import McpServer, McpServers
from llmgine.llm.pipeline import build_pipeline
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.resolve import provider_for
from llmgine.llm.structured import correction, output_schema, parse_output
from llmgine.llm.tools import Tool, ToolRegistry
from llmgine.llm.types import ChatMessage, Completion, LLMRequest, ToolCall, Usage
from llmgine.messages.commands import CommandResult
from llmgine.observability.jsonsafe import json_safe

__all__ = ["LLMEngine"]

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

DEFAULT_TIMEOUT = 120.0
"""Seconds a prompt may take unless the engine or the prompt says otherwise."""


def _add(total: Usage, more: Usage) -> Usage:
    return Usage(
        input_tokens=total.input_tokens + more.input_tokens,
        output_tokens=total.output_tokens + more.output_tokens,
        estimated=total.estimated or more.estimated,
    )


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
        timeout: Seconds a prompt may take, every call and tool run included, unless
            the prompt sets its own; ``None`` means no limit.
        options: Request parameters for every call (``seed``, ``stop``, ``top_p``,
            ``extra_body``, ...); a prompt's ``options`` are merged over them.
        max_output_retries: With ``output_type``, how many times an answer that does
            not validate is sent back with the error before the prompt fails.
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
        timeout: float | None = DEFAULT_TIMEOUT,
        options: Mapping[str, Any] | None = None,
        max_output_retries: int = 2,
    ) -> None:
        if max_tool_rounds < 0:
            raise ValueError(f"max_tool_rounds must be 0 or more; got {max_tool_rounds}.")
        if max_output_retries < 0:
            raise ValueError(f"max_output_retries must be 0 or more; got {max_output_retries}.")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be more than 0 seconds (or None); got {timeout}.")
        self.timeout = timeout
        self.options: dict[str, Any] = dict(options or {})
        self.max_output_retries = max_output_retries
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
        self.approvals = ToolApprovals(bus)  # handles ApproveToolCallCommand for this engine
        self.mcp_servers = McpServers()
        bus.on_stop(self.close)  # the MCP server processes end with the bus

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
        """The current model as a model string, e.g. ``"offline"`` or ``"openai:gpt-4o-mini"``.

        ``engine.set_model(engine.model)`` keeps the current provider.
        """
        return self.provider.model_string

    def set_model(self, model: str) -> None:
        """Switch the engine to another model string; conversations are kept.

        The current model's own string changes nothing (a replay keeps its place).
        """
        if model.strip() == self.model:
            return
        self.provider = provider_for(model)

    async def aclose(self) -> None:
        """Close the providers' connections (an OpenAI client keeps them alive).

        The engine stays usable: providers open new connections when asked again.
        """
        for provider in (self.provider, *self._providers.values()):
            await provider.aclose()

    def register_tool(
        self, fn: Callable[..., Any] | Tool, *, requires_approval: bool = False
    ) -> Tool:
        """Offer ``fn`` to the model as a tool; returns its :class:`Tool`.

        With ``requires_approval=True`` each call waits for an ``ApproveToolCallCommand``
        (see :mod:`llmgine.llm.approval`; the wait is ``engine.approvals.timeout``).

        Raises:
            TypeError: ``fn`` is a class (a ``Command``, a pydantic model, ...) or cannot be
                described to a model; pass a function whose arguments the model fills in.
        """
        registered = self.tools.register(fn)
        if requires_approval:
            registered.requires_approval = True
        return registered

    def tool(self, fn: Callable[..., Any] | None = None, *, requires_approval: bool = False) -> Any:
        """Decorator form of :meth:`register_tool`; the function is returned unchanged.

        Use it bare (``@engine.tool``) or with options (``@engine.tool(requires_approval=True)``).
        """

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            self.register_tool(f, requires_approval=requires_approval)
            return f

        return register(fn) if fn is not None else register

    async def add_mcp_server(
        self,
        command: Sequence[str] | None = None,
        *,
        url: str | None = None,
        env: dict[str, str] | None = None,
        name: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
        requires_approval: bool = False,
    ) -> McpServer:
        """Start an MCP server (``command``, stdio) or join one (``url``, streamable HTTP).

        Its tools are offered to the model beside the local ones (see :mod:`llmgine.llm.mcp`).

        Args:
            command: The server's command line, e.g. ``["mcp-server-time"]``.
            url: A streamable-HTTP endpoint instead of a command.
            env: Extra environment variables for the server process.
            name: The server's name in tool lists and spans (default: its own name).
            cwd: The server process's working directory.
            timeout: Seconds one tool call may take.
            requires_approval: Each call of its tools waits for ``ApproveToolCallCommand``.

        Raises:
            ConfigurationError: The server could not start, or its tool names are taken.
        """
        server = McpServer(command, url=url, env=env, cwd=cwd, name=name, timeout=timeout)
        await self.mcp_servers.add(server, taken=[t.name for t in self.tools])
        for mcp_tool in server.tools:
            mcp_tool.requires_approval = requires_approval
            self.tools.register(mcp_tool)
        return server

    async def remove_mcp_server(self, name: str) -> None:
        """Stop the MCP server called ``name`` and withdraw its tools."""
        server = await self.mcp_servers.remove(name)
        for mcp_tool in server.tools:
            if self.tools.get(mcp_tool.name) is mcp_tool:
                self.tools.unregister(mcp_tool.name)

    async def close(self) -> None:
        """Stop the engine's MCP servers (their processes end); the engine stays usable."""
        for server in list(self.mcp_servers):
            await self.remove_mcp_server(server.name)

    # ------------------------------------------------------------ convenience

    @overload
    async def chat(self, prompt: str, *, output_type: type[T], **fields: Any) -> T: ...

    @overload
    async def chat(self, prompt: str, *, output_type: None = None, **fields: Any) -> str: ...

    async def chat(
        self, prompt: str, *, output_type: type[BaseModel] | None = None, **fields: Any
    ) -> Any:
        """Send ``prompt`` through the bus and return the reply text.

        With ``output_type`` (a pydantic model), return a validated instance of it.

        Args:
            prompt: The user's message.
            output_type: A pydantic model the answer must match.
            **fields: Further ``PromptCommand`` fields: ``conversation_id``, ``model``,
                ``temperature``, ``max_tokens``, ``tool_choice``, ``timeout``, ``options``, ...

        Raises:
            CommandFailedError: The prompt failed; its ``result`` holds the details.
            BusStateError: Another engine replaced this one on the bus.
        """
        self._check_registered()
        command = PromptCommand(prompt=prompt, output_type=output_type, **fields)
        result = await self.bus.execute(command)
        if output_type is not None and result.success:
            return result.result
        return self._text(result)

    async def stream(self, prompt: str, **fields: Any) -> AsyncIterator[str]:
        """Send ``prompt`` through the bus and yield the reply's text as it arrives.

        Stopping the iteration early cancels the generation.

        Args:
            prompt: The user's message.
            **fields: Further ``PromptCommand`` fields, as for :meth:`chat`.

        Raises:
            CommandFailedError: The prompt failed.
            BusStateError: Another engine replaced this one on the bus.
        """
        self._check_registered()
        command = PromptCommand(prompt=prompt, stream=True, **fields)
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
        """Run one prompt: provider calls and tool rounds until the model answers in text.

        The conversation changes only when the prompt succeeds: a failed, timed-out
        or cancelled prompt leaves it as it was.
        """
        timeout = command.timeout if command.timeout is not None else self.timeout
        if timeout is None:
            return await self._prompt(command, None)
        deadline = time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout) as scope:
                return await self._prompt(command, deadline)
        except TimeoutError:
            if not scope.expired():
                raise
            raise ProviderTimeoutError(
                f"The prompt took longer than its timeout of {timeout:g} s and was stopped; "
                "its conversation is unchanged. Allow more with timeout=... on the prompt or "
                "on the LLMEngine."
            ) from None

    async def _prompt(self, command: PromptCommand, deadline: float | None) -> CommandResult:
        provider = self._provider(command.model)
        conversation = self.conversations.get(command.conversation_id)
        tools = self.tools.definitions() if command.use_tools else []
        tool_choice = self._tool_choice(command.tool_choice, tools)
        schema = output_schema(command.output_type) if command.output_type else None
        turn = [ChatMessage(role="user", content=command.prompt)]
        retry: list[ChatMessage] = []  # an invalid structured answer and its correction
        usage = Usage()
        result: Any = None
        rounds = tool_rounds = retries = 0
        while True:
            rounds += 1
            messages = [*conversation.request_messages(), *turn, *retry]
            request = self._request(provider, messages, tools, tool_choice, schema, command)
            completion = await self._call(provider, request, command, deadline)
            usage = _add(usage, completion.usage)
            message = ChatMessage(
                role="assistant", content=completion.content, tool_calls=completion.tool_calls
            )
            if completion.tool_calls:
                turn += retry
                retry = []
                turn.append(message)
                if tool_rounds == self.max_tool_rounds:
                    result = self._stop_tool_rounds(completion, turn.append)
                    break
                tool_rounds += 1
                if tool_choice not in (None, "auto", "none"):
                    # A forced choice is met once; later rounds leave it to the model (the
                    # server's default), so the turn can end in an answer.
                    tool_choice = None
                results = await asyncio.gather(
                    *(self._run_tool(call, command) for call in completion.tool_calls)
                )
                for call, content in zip(completion.tool_calls, results, strict=True):
                    turn.append(
                        ChatMessage(
                            role="tool", tool_call_id=call.id, name=call.name, content=content
                        )
                    )
                continue
            text = completion.content or ""
            if command.output_type is None:
                turn.append(message)
                result = text
                break
            parsed = parse_output(command.output_type, text)
            if not isinstance(parsed, str):
                turn.append(message)
                result = parsed
                break
            if retries >= self.max_output_retries:
                raise StructuredOutputError(
                    f"The model's answer is not a valid {command.output_type.__name__} after "
                    f"{retries + 1} attempts: {parsed}. Its last answer began {text[:120]!r}. "
                    "Try a clearer prompt, a larger model, or more max_output_retries on the "
                    "LLMEngine."
                )
            retries += 1
            retry = [message, correction(command.output_type, parsed)]
        for message in turn:
            conversation.append(message)
        metadata: dict[str, Any] = {
            "model": completion.model or provider.model,
            "provider": provider.name,
            "rounds": rounds,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
        }
        if usage.estimated:
            metadata["usage_estimated"] = True
        if command.output_type is not None:
            metadata["output_retries"] = retries
        return CommandResult(success=True, result=result, metadata=metadata)

    def _tool_choice(self, choice: str | None, tools: list[dict[str, Any]]) -> str | None:
        if choice is None or choice in ("auto", "none"):
            return choice if tools else None
        if not tools:
            raise ConfigurationError(
                f"tool_choice={choice!r} needs tools, but this prompt offers none (the engine "
                "has no tools, or use_tools=False)."
            )
        if choice != "required" and self.tools.get(choice) is None:
            names = ", ".join(t.name for t in self.tools)
            raise ConfigurationError(
                f'tool_choice={choice!r} is neither "auto", "none", "required" nor a tool of '
                f"this engine ({names})."
            )
        return choice

    def _request(
        self,
        provider: Provider,
        messages: list[ChatMessage],
        tools: list[dict[str, Any]],
        tool_choice: str | None,
        schema: dict[str, Any] | None,
        command: PromptCommand,
    ) -> LLMRequest:
        return LLMRequest(
            model=provider.model,
            messages=messages,
            tools=tools,
            tool_choice=tool_choice,
            temperature=command.temperature,
            max_tokens=command.max_tokens,
            options={**self.options, **(command.options or {})},
            output_schema=schema,
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
        request: LLMRequest,
        command: PromptCommand,
        deadline: float | None,
    ) -> Completion:
        if deadline is not None:
            # The provider's own timeout ends with the prompt's, so its retries cannot outlast it.
            request.timeout = max(deadline - time.monotonic(), 0.001)
        chain = build_pipeline(
            provider, bus=self.bus, conversation_id=command.conversation_id, prompt_id=command.id
        )
        if not command.stream:
            return await chain.complete(request)
        sink = self._sinks.get(command.id)
        completion: Completion | None = None
        async for chunk in chain.stream(request):
            if chunk.delta and sink is not None:
                sink.put_nowait(chunk.delta)
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
        if (known := self.tools.get(call.name)) is not None:
            attributes.update(known.span_attributes)
        value: Any = None
        error: str | None = None
        start = time.perf_counter()
        async with self.bus.span(f"execute_tool {call.name}", kind="TOOL", **attributes) as span:
            tool = self.tools.get(call.name)
            try:
                if tool is None:
                    available = ", ".join(t.name for t in self.tools) or "none"
                    raise ToolError(f"unknown tool {call.name!r}; available tools: {available}")
                if tool.requires_approval:
                    # A person only sees calls that could run; checked off the loop (an MCP
                    # schema's pattern may take up to its time bound).
                    await asyncio.to_thread(tool.validate, call.arguments)
                    await self.approvals.check(call, command.conversation_id, command.id)
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
