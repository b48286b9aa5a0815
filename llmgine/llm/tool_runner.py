"""Running the model's tool calls: local tools, MCP servers' tools, approval, tool events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

from llmgine.bus.bus import MessageBus
from llmgine.errors import ApprovalWithdrawnError, ConfigurationError, ToolError
from llmgine.llm.events import ToolCallEvent, ToolResultEvent
from llmgine.llm.mcp import McpServer, McpServers
from llmgine.llm.tool_approvals import ToolApprovals
from llmgine.llm.tool_results import exit_text, tool_content
from llmgine.llm.tools import Tool, ToolRegistry
from llmgine.llm.types import ChatMessage, ToolCall

__all__ = ["ToolRunner"]

logger = logging.getLogger(__name__)


class ToolRunner:
    """Owns the tools a model may call and runs its calls.

    Local functions and the tools of MCP servers share one :class:`ToolRegistry`; a
    tool that ``requires_approval`` waits for an ``ApproveToolCallCommand`` through
    ``approvals``. Each run is a ``TOOL`` span with a ``ToolCallEvent`` and a
    ``ToolResultEvent``; a failing tool becomes an error text for the model.

    Args:
        bus: Where spans and events go.
        tools: The functions (or ``Tool``s) offered from the start.
        approvals: The approval desk; by default a new one, which handles the bus's
            ``ApproveToolCallCommand`` from then on.

    Raises:
        TypeError: A tool cannot be described to a model (before anything is registered).
    """

    def __init__(
        self,
        bus: MessageBus,
        tools: Iterable[Callable[..., Any] | Tool] = (),
        *,
        approvals: ToolApprovals | None = None,
    ) -> None:
        self.bus = bus
        self.tools = ToolRegistry(tools)
        self.approvals = approvals if approvals is not None else ToolApprovals(bus)
        self.mcp_servers = McpServers()

    def register(self, fn: Callable[..., Any] | Tool, *, requires_approval: bool = False) -> Tool:
        """Offer ``fn`` to the model; its :class:`Tool` (see ``LLMEngine.register_tool``)."""
        registered = self.tools.register(fn)
        if requires_approval:
            registered.requires_approval = True
        return registered

    async def add_mcp_server(self, server: McpServer, *, requires_approval: bool = False) -> None:
        """Start or join ``server`` and offer its tools (see ``LLMEngine.add_mcp_server``).

        Raises:
            ConfigurationError: The server could not start, or its tool names are taken.
        """
        await self.mcp_servers.add(server, taken=[t.name for t in self.tools])
        for mcp_tool in server.tools:
            mcp_tool.requires_approval = requires_approval
            self.tools.register(mcp_tool)

    async def remove_mcp_server(self, name: str) -> None:
        """Stop the MCP server called ``name`` and withdraw its tools."""
        server = await self.mcp_servers.remove(name)
        for mcp_tool in server.tools:
            if self.tools.get(mcp_tool.name) is mcp_tool:
                self.tools.unregister(mcp_tool.name)

    async def close(self) -> None:
        """Stop every MCP server (their processes end); the runner stays usable."""
        for server in list(self.mcp_servers):
            await self.remove_mcp_server(server.name)

    def offer(self, use_tools: bool, choice: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """The tool definitions a prompt offers, and its ``tool_choice`` checked against them.

        Raises:
            ConfigurationError: ``choice`` names no tool of this runner, or needs tools
                and the prompt offers none.
        """
        tools = self.tools.definitions() if use_tools else []
        if choice is None or choice in ("auto", "none"):
            return tools, (choice if tools else None)
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
        return tools, choice

    async def run_all(
        self, calls: Sequence[ToolCall], conversation_id: str, prompt_id: UUID
    ) -> list[ChatMessage]:
        """Run ``calls`` concurrently; one ``tool`` message per call, in the calls' order.

        Raises:
            ApprovalWithdrawnError: ``bus.stop()`` ended a call's wait for approval; the
                other calls are cancelled.
        """
        runs = [asyncio.ensure_future(self.run(c, conversation_id, prompt_id)) for c in calls]
        try:
            results = await asyncio.gather(*runs)
        except ApprovalWithdrawnError:
            for other in runs:
                other.cancel()
            await asyncio.wait(runs)
            raise
        return [
            ChatMessage(role="tool", tool_call_id=call.id, name=call.name, content=content)
            for call, content in zip(calls, results, strict=True)
        ]

    async def run(self, call: ToolCall, conversation_id: str, prompt_id: UUID) -> str:
        """Run one tool call; any failure becomes an error text for the model, never a crash.

        Raises:
            ApprovalWithdrawnError: ``bus.stop()`` ended the call's wait for approval.
        """
        ids = {"conversation_id": conversation_id, "prompt_id": prompt_id}
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
                    await self.approvals.check(call, conversation_id, prompt_id)
                value = await tool.run(call.arguments)
            except ToolError as exc:
                error = str(exc)
            except ApprovalWithdrawnError:
                raise  # the prompt ends here: no more model calls after bus.stop()
            except SystemExit as exc:
                # A tool wrapping a command-line parser exits: on a bad option, or after --help.
                value, error = exit_text(call.name, exc.code)
                if error is not None:
                    logger.info("Tool %s exited; the error goes back to the model", call.name)
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
        return f"Error: {error}" if error is not None else tool_content(value)
