"""The MCP servers of one engine, by name."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from llmgine.errors import ConfigurationError
from llmgine.llm.mcp.server import McpServer

__all__ = ["McpServers"]


class McpServers:
    """The MCP servers of one engine, by name."""

    def __init__(self) -> None:
        self._servers: dict[str, McpServer] = {}

    def __iter__(self) -> Iterator[McpServer]:
        return iter(list(self._servers.values()))

    def __len__(self) -> int:
        return len(self._servers)

    def __contains__(self, name: object) -> bool:
        return name in self._servers

    def get(self, name: str) -> McpServer | None:
        """The server called ``name``, if any."""
        return self._servers.get(name)

    async def add(self, server: McpServer, taken: Iterable[str]) -> McpServer:
        """Connect ``server`` and keep it; its tools must not clash with ``taken`` names.

        Raises:
            ConfigurationError: It could not connect, its name is in use, or a tool
                name is taken (the server is closed again).
        """
        if server.name and server.name in self._servers:
            raise ConfigurationError(
                f"an MCP server named {server.name!r} is already added; remove it first"
            )
        await server.connect()
        if server.name in self._servers:
            base, n = server.name, 2
            while f"{base}-{n}" in self._servers:
                n += 1
            server.name = f"{base}-{n}"
        clashes = sorted({t.name for t in server.tools} & set(taken))
        if clashes:
            await server.close()
            raise ConfigurationError(
                f"MCP server {server.name!r} offers tools whose names are taken: "
                f"{', '.join(clashes)}; remove those tools or that server first"
            )
        self._servers[server.name] = server
        return server

    async def remove(self, name: str) -> McpServer:
        """Close and forget the server called ``name``.

        Raises:
            ConfigurationError: No server has that name.
        """
        server = self._servers.pop(name, None)
        if server is None:
            known = ", ".join(self._servers) or "none"
            raise ConfigurationError(f"no MCP server named {name!r}; added servers: {known}")
        await server.close()
        return server

    async def close(self) -> None:
        """Close every server."""
        while self._servers:
            _, server = self._servers.popitem()
            await server.close()
