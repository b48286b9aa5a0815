"""MCP tool servers: the tools of a Model Context Protocol server, offered like local tools.

``await engine.add_mcp_server(command=["mcp-server-time"])`` starts a stdio server
(``url="http://..."`` joins a streamable-HTTP one) through the official ``mcp`` SDK
(``pip install 'llmgine[mcp]'``, imported only here and only when used). Each of the
server's tools becomes an :class:`McpTool` in the engine's tool registry: the same
``ToolCallEvent``/``ToolResultEvent``, ``TOOL`` spans (with an ``mcp.server``
attribute), arguments validated against the server's input schema, errors and
timeouts sent back to the model. ``await engine.close()``, ``remove_mcp_server`` or
``await bus.stop()`` of the engine's bus ends the session and the server's process.

One concept per module:

- :mod:`~llmgine.llm.mcp.server`: one server, its connection and its process;
- :mod:`~llmgine.llm.mcp.servers`: the servers of one engine, by name;
- :mod:`~llmgine.llm.mcp.tool`: one tool of a server, as the engine sees it;
- :mod:`~llmgine.llm.mcp.names`: tool names the model's API accepts (renamed or refused);
- :mod:`~llmgine.llm.mcp.schema`: arguments checked against the server's schema within a
  time bound, off the event loop;
- :mod:`~llmgine.llm.mcp.command`: a server's command found in this Python environment.
"""

from __future__ import annotations

from llmgine.llm.mcp.server import McpServer, safe_url
from llmgine.llm.mcp.servers import McpServers
from llmgine.llm.mcp.tool import McpTool

__all__ = ["McpServer", "McpServers", "McpTool", "safe_url"]
