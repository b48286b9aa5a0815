"""The LLM engine: a command handler turning prompts into provider calls, tool runs and events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from llmgine.bus.bus import MessageBus
from llmgine.errors import BusStateError, CommandFailedError
from llmgine.llm.approval_wait import within_prompt_timeout
from llmgine.llm.budget import Budget, Spend
from llmgine.llm.commands import PromptCommand
from llmgine.llm.conversations import ContextWindow, Conversation, Conversations, token_counter
from llmgine.llm.conversations.facade import ConversationSetting, store_for
from llmgine.llm.engine_arguments import check_counts, check_timeout, model_for
from llmgine.llm.engine_batch import BatchMethods
from llmgine.llm.engine_tools import ToolMethods
from llmgine.llm.limits import LimitSetting
from llmgine.llm.pipeline import CallPolicies, Resilience, build_pipeline
from llmgine.llm.pipeline.policies import CacheSetting
from llmgine.llm.pricing import Price
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.resolve import provider_for
from llmgine.llm.retries import Retries
from llmgine.llm.run import PromptRun, Sinks
from llmgine.llm.tool_runner import ToolRunner
from llmgine.llm.tools import Tool
from llmgine.messages.commands import CommandResult

__all__ = ["LLMEngine"]

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

DEFAULT_TIMEOUT = 120.0
"""Seconds a prompt may take unless the engine or the prompt says otherwise."""


class LLMEngine(ToolMethods, BatchMethods):
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
        max_history: Messages of a conversation a prompt sends (the newest whole turns);
            the in-memory store keeps no more, a SQLite or Redis store keeps all.
        timeout: Seconds a prompt may take, every call and tool run included, unless
            the prompt sets its own; ``None`` means no limit.
        options: Request parameters for every call (``seed``, ``stop``, ``top_p``,
            ``extra_body``, ...); a prompt's ``options`` are merged over them.
        max_output_retries: With ``output_type``, how many times an answer that does
            not validate is sent back with the error before the prompt fails.
        prices: Prices per model (``{"gpt-4o-mini": Price(...)}``) over the bundled ones.
        cache: Answer requests seen before from a cache: ``True`` (the default file),
            a path, ``"redis"`` (the connected bus's Redis) or an ``LLMCache``.
        budget: A spending limit (``Budget(usd=...)``): a call past it fails unsent.
        conversations: Where conversations are kept: in memory (``None``, the default),
            ``"sqlite:///chats.db"`` (a file a new engine continues them from), ``"redis"``
            (the connected bus's Redis, shared by its workers) or a ``ConversationStore``.
        max_context_tokens: The model's window: before each request the oldest turns are
            left out of it to fit (a ``ConversationTrimmedEvent`` each time); ``None``
            sends the whole history. A prompt's ``max_context_tokens`` overrides it.
        retries: How a call failing with 429, 5xx, a timeout or a lost connection is
            tried again (``Retries``; an ``LLMRetryEvent`` each); ``None``: not at all.
        limits: ``RateLimits`` for every model, or ``{model: RateLimits}``: calls wait
            for room (shared by the workers while the bus is connected to Redis).
        fallback: Model strings (or providers) to try in order when a call fails after its
            retries.
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
        prices: Mapping[str, Price] | None = None,
        cache: CacheSetting = None,
        budget: Budget | None = None,
        conversations: ConversationSetting = None,
        max_context_tokens: int | None = None,
        retries: Retries | None = Retries(),  # noqa: B008 (frozen: one default is safe)
        limits: LimitSetting = None,
        fallback: Sequence[str | Provider] = (),
    ) -> None:
        check_counts(max_tool_rounds, max_output_retries, max_history, max_context_tokens)
        check_timeout(timeout)
        model = model_for(provider, model)
        self.timeout = timeout
        self.options: dict[str, Any] = dict(options or {})
        self.max_output_retries = max_output_retries
        self.bus = bus
        if provider is None:
            provider = provider_for(model)
        elif model is not None:
            provider.model = model
        self.provider = provider
        self.runner = ToolRunner(bus, tools)  # its ToolApprovals handles ApproveToolCallCommand
        self.tools = self.runner.tools
        self.approvals = self.runner.approvals
        self.mcp_servers = self.runner.mcp_servers
        self.conversations = Conversations(
            store_for(conversations, bus, max_history), system_prompt, max_history
        )
        """The conversations: ``list()``, ``get(id)``, ``fork(id)``, ``delete(id)``, ..."""
        self.max_context_tokens = max_context_tokens
        self.max_tool_rounds = max_tool_rounds
        self.policies = CallPolicies(bus, prices=prices, cache=cache, budget=budget)
        self.resilience = Resilience(
            bus, retries=retries, limits=limits, fallback=fallback, model=provider
        )
        self._providers: dict[str, Provider] = {}
        self._sinks = Sinks()
        self._register(bus)
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
        self.conversations.register(bus)

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

    @property
    def spend(self) -> Spend:
        """What this engine's calls have cost so far."""
        return self.policies.spend

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

    async def close(self) -> None:
        """Stop the MCP servers and close the conversation store; the engine stays usable."""
        await self.runner.close()
        await self.conversations.aclose()

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
        async for delta in self._sinks.relay(command, self._reply):
            yield delta

    async def _reply(self, command: PromptCommand) -> str:
        return self._text(await self.bus.execute(command))

    @staticmethod
    def _text(result: CommandResult) -> str:
        if not result.success:
            raise CommandFailedError(f"The prompt failed: {result.error}", result)
        return str(result.result)

    async def handle_prompt(self, command: PromptCommand) -> CommandResult:
        """Run one prompt: provider calls and tool rounds until the model answers in text.

        The conversation changes only when the prompt succeeds: a failed, timed-out
        or cancelled prompt leaves it as it was.
        """
        provider = self._provider(command.model)
        limit = command.max_context_tokens or self.max_context_tokens
        window = None
        if limit is not None:
            window = ContextWindow(limit, await token_counter(provider), self.bus, command)
        conversation = await self.conversations.aget(command.conversation_id)
        run = self.prompt_run(command, conversation, window)
        return await within_prompt_timeout(run.result(), run.timeout)

    def prompt_run(
        self,
        command: PromptCommand,
        conversation: Conversation,
        window: ContextWindow | None = None,
        *,
        chain: Provider | None = None,
    ) -> PromptRun:
        """The run of ``command`` in ``conversation`` with this engine's settings, not started.

        Args:
            command: The prompt.
            conversation: The conversation it continues (changed only by a run that succeeds).
            window: Fits each request into the prompt's context window, if it has one.
            chain: The provider pipeline; default: built for ``command`` (its steps name
                the prompt in what they publish, so a run that calls needs its own).
        """
        if command.system_prompt is not None:
            conversation.system_prompt_for_turn(command.system_prompt)
        if chain is None:
            chain = build_pipeline(
                self._provider(command.model),
                bus=self.bus,
                command=command,
                policies=self.policies,
                resilience=self.resilience,
            )
        return PromptRun(
            command,
            chain,
            conversation,
            self.runner,
            options={**self.options, **(command.options or {})},
            max_tool_rounds=self.max_tool_rounds,
            max_output_retries=self.max_output_retries,
            timeout=command.timeout if command.timeout is not None else self.timeout,
            sink=self._sinks.get(command.id),
            window=window,
        )

    def _provider(self, model: str | None) -> Provider:
        if model is None:
            return self.provider
        provider = self._providers.get(model)
        if provider is None:
            provider = self._providers[model] = provider_for(model)
        return provider
