"""The engine's tool methods: local functions and MCP servers offered to the model.

A thin front of :class:`~llmgine.llm.tool_runner.ToolRunner`, which runs the calls.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from llmgine.llm.mcp import McpServer
from llmgine.llm.tool_runner import ToolRunner
from llmgine.llm.tools import Tool

__all__ = ["ToolMethods"]


class ToolMethods:
    """The tool methods of ``LLMEngine``: ``register_tool``, ``@tool``, MCP servers."""

    runner: ToolRunner

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
        return self.runner.register(fn, requires_approval=requires_approval)

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
        await self.runner.add_mcp_server(server, requires_approval=requires_approval)
        return server

    async def remove_mcp_server(self, name: str) -> None:
        """Stop the MCP server called ``name`` and withdraw its tools."""
        await self.runner.remove_mcp_server(name)
