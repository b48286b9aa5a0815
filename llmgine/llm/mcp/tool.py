"""One tool of an MCP server, as the engine sees it."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from llmgine.llm.mcp.schema import check_arguments, make_validator
from llmgine.llm.tools import Tool, arguments_object

__all__ = ["McpTool", "ToolHost"]


class ToolHost(Protocol):
    """What a tool needs of its MCP server (an :class:`~llmgine.llm.mcp.McpServer`)."""

    name: str
    """The server's name, in spans and tool lists."""

    async def call(self, tool_name: str, arguments: dict[str, Any]) -> Any:
        """Call the server's tool ``tool_name`` with checked arguments."""
        ...


class McpTool(Tool):
    """One tool of an MCP server, as the engine sees it.

    Its schema is the server's input schema; arguments are validated against it
    (JSON Schema, patterns cut off after a time bound, in a worker thread so the
    event loop goes on) before the call, and the call goes to the server with a
    timeout. A result the server marks as an error raises :class:`ToolError`, so it
    goes back to the model like any tool error.

    Attributes:
        name: The name offered to the model (a valid function name).
        remote_name: The server's own name of the tool, used to call it; it differs
            from ``name`` when the server's name was not one the API accepts.
    """

    def __init__(
        self,
        server: ToolHost,
        name: str,
        description: str,
        input_schema: dict[str, Any],
        *,
        remote_name: str | None = None,
        requires_approval: bool = False,
    ) -> None:
        self.server = server
        self.fn = self.run
        self.name = name
        self.remote_name = remote_name if remote_name is not None else name
        self.description = description
        self.input_schema = input_schema
        self.is_async = True
        self.requires_approval = requires_approval
        self._validator: Any = None

    def __repr__(self) -> str:
        renamed = f", remote_name={self.remote_name!r}" if self.remote_name != self.name else ""
        return f"McpTool({self.name!r}, server={self.server.name!r}{renamed})"

    @property
    def parameters(self) -> dict[str, Any]:
        """The server's JSON schema of the arguments."""
        schema = dict(self.input_schema)
        schema.pop("title", None)
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        return schema

    @property
    def span_attributes(self) -> dict[str, Any]:
        """Extra attributes of this tool's ``TOOL`` spans: the server it runs on."""
        attributes: dict[str, Any] = {"mcp.server": self.server.name}
        if self.remote_name != self.name:
            attributes["mcp.tool"] = self.remote_name
        return attributes

    def validate(self, arguments: str | dict[str, Any]) -> dict[str, Any]:
        """Return the arguments checked against the server's input schema.

        The schema's patterns may take :data:`~llmgine.llm.mcp.schema.PATTERN_TIMEOUT`
        seconds in all; :meth:`run` checks in a worker thread, off the event loop.

        Raises:
            ToolError: Not a JSON object, not valid for the schema, or a pattern
                check was cut off.
        """
        raw = arguments_object(self.name, arguments)
        if self._validator is None:
            self._validator = make_validator(self.parameters)
        check_arguments(self._validator, raw, self.name)
        return raw

    async def run(self, arguments: str | dict[str, Any]) -> Any:
        """Validate ``arguments`` (in a worker thread) and call the tool on its server."""
        checked = await asyncio.to_thread(self.validate, arguments)
        return await self.server.call(self.remote_name, checked)
