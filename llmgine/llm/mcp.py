"""MCP tool servers: the tools of a Model Context Protocol server, offered like local tools.

``await engine.add_mcp_server(command=["mcp-server-time"])`` starts a stdio server
(``url="http://..."`` joins a streamable-HTTP one) through the official ``mcp`` SDK
(``pip install 'llmgine[mcp]'``, imported only here and only when used). Each of the
server's tools becomes an :class:`McpTool` in the engine's tool registry: the same
``ToolCallEvent``/``ToolResultEvent``, ``TOOL`` spans (with an ``mcp.server``
attribute), arguments validated against the server's input schema, errors and
timeouts sent back to the model. ``await engine.close()`` (or ``remove_mcp_server``)
ends the session and the server's process.

The SDK's connection is a tree of async context managers that must be entered and
left by one task, so each server has an owner task that connects, waits until it is
told to close, and disconnects; calls from other tasks go through its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

from llmgine.errors import ConfigurationError, ToolError
from llmgine.llm.tools import Tool

__all__ = ["McpServer", "McpServers", "McpTool"]

logger = logging.getLogger(__name__)

DEFAULT_CALL_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 60.0


def _sdk() -> Any:
    try:
        import mcp
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise ConfigurationError(
            "MCP servers need the official MCP SDK: pip install 'llmgine[mcp]'"
        ) from exc
    return mcp


def safe_url(url: str) -> str:
    """``url`` without credentials (``user:secret@``), for names, reprs and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = authority.rpartition("@")[2]
    return f"{scheme}://{authority}{slash}{path}"


class McpTool(Tool):
    """One tool of an MCP server, as the engine sees it.

    Its schema is the server's input schema, arguments are validated against it
    (JSON Schema) before the call, and the call goes to the server with a timeout.
    A result the server marks as an error raises :class:`ToolError`, so it goes
    back to the model like any tool error.
    """

    def __init__(
        self,
        server: McpServer,
        name: str,
        description: str,
        input_schema: dict[str, Any],
        *,
        requires_approval: bool = False,
    ) -> None:
        self.server = server
        self.fn = self.run
        self.name = name
        self.description = description
        self.input_schema = input_schema
        self.is_async = True
        self.requires_approval = requires_approval

    def __repr__(self) -> str:
        return f"McpTool({self.name!r}, server={self.server.name!r})"

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
        return {"mcp.server": self.server.name}

    def validate(self, arguments: str | dict[str, Any]) -> dict[str, Any]:
        """Return the arguments checked against the server's input schema.

        Raises:
            ToolError: Not a JSON object, or not valid for the schema.
        """
        import jsonschema

        try:
            raw = json.loads(arguments or "{}") if isinstance(arguments, str) else arguments
        except json.JSONDecodeError as exc:
            raise ToolError(f"arguments for {self.name} are not valid JSON ({exc.msg})") from exc
        if not isinstance(raw, dict):
            raise ToolError(f"arguments for {self.name} must be a JSON object, got {raw!r}")
        problems = sorted(
            jsonschema.Draft202012Validator(self.parameters).iter_errors(raw),
            key=lambda e: list(e.path),
        )
        if problems:
            shown = "; ".join(
                f"{'.'.join(str(p) for p in e.path) or 'arguments'}: {e.message}" for e in problems
            )
            raise ToolError(f"invalid arguments for {self.name}: {shown}")
        return raw

    async def run(self, arguments: str | dict[str, Any]) -> Any:
        """Validate ``arguments`` and call the tool on its server."""
        return await self.server.call(self.name, self.validate(arguments))


class McpServer:
    """One MCP server: a stdio process (``command``) or a streamable-HTTP ``url``.

    Made by :meth:`McpServers.add` (``engine.add_mcp_server``); ``tools`` are known
    once it is connected.

    Args:
        command: The server's command line, e.g. ``["mcp-server-time"]``.
        url: The endpoint of a streamable-HTTP server (instead of ``command``).
        env: Extra environment variables for the process (values never shown).
        cwd: The process's working directory.
        name: The name tools and spans show; defaults to the server's own name.
        timeout: Seconds one tool call may take before it fails.
    """

    def __init__(
        self,
        command: Sequence[str] | None = None,
        *,
        url: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        name: str | None = None,
        timeout: float = DEFAULT_CALL_TIMEOUT,
    ) -> None:
        if (command is None) == (url is None):
            raise ConfigurationError(
                "give an MCP server either command=[...] (stdio) or url=... (streamable HTTP)"
            )
        if command is not None and (isinstance(command, str) or not command):
            raise ConfigurationError(
                "command must be a non-empty list of words, e.g. command=['mcp-server-time']"
            )
        self.command = list(command) if command is not None else None
        self.url = url
        self.env = dict(env or {})
        self.cwd = cwd
        self.name = name or ""
        self.timeout = timeout
        self.tools: list[McpTool] = []
        self._session: Any = None
        self._owner: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._errlog: Any = None

    def __repr__(self) -> str:
        where = " ".join(self.command) if self.command else safe_url(self.url or "")
        keys = f" env={sorted(self.env)}" if self.env else ""
        return f"<McpServer {self.name!r} {where}{keys} tools={[t.name for t in self.tools]}>"

    @property
    def target(self) -> str:
        """The command line or the URL (without credentials), for lists and errors."""
        return " ".join(self.command) if self.command else safe_url(self.url or "")

    @property
    def connected(self) -> bool:
        """Whether the session is open."""
        return self._session is not None and self._owner is not None and not self._owner.done()

    async def connect(self, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        """Start (or reach) the server, initialize the session and list its tools.

        Raises:
            ConfigurationError: The server could not be started or did not answer.
        """
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closing = asyncio.Event()
        self._owner = asyncio.create_task(self._serve(ready), name=f"llmgine-mcp {self.target}")
        try:
            await asyncio.wait_for(asyncio.shield(ready), timeout)
        except TimeoutError:
            await self.close()
            raise ConfigurationError(
                f"MCP server {self.target!r} did not answer within {timeout:g} s{self._stderr()}"
            ) from None
        except ConfigurationError:
            await self.close()
            raise

    async def _serve(self, ready: asyncio.Future[None]) -> None:
        mcp = _sdk()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.command is not None:
                    self._errlog = stack.enter_context(  # the server's stderr, for errors
                        tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
                    )
                    params = mcp.StdioServerParameters(
                        command=self.command[0],
                        args=self.command[1:],
                        env=self.env or None,
                        cwd=self.cwd,
                    )
                    read, write = await stack.enter_async_context(
                        mcp.stdio_client(params, errlog=self._errlog)
                    )
                else:
                    from mcp.client.streamable_http import streamable_http_client

                    read, write = await stack.enter_async_context(
                        streamable_http_client(str(self.url))
                    )
                session = await stack.enter_async_context(mcp.ClientSession(read, write))
                info = await session.initialize()
                listed = await session.list_tools()
                self.name = self.name or str(info.server_info.name)
                self.tools = [
                    McpTool(self, t.name, t.description or "", dict(t.input_schema))
                    for t in listed.tools
                ]
                self._session = session
                ready.set_result(None)
                assert self._closing is not None
                await self._closing.wait()
        except Exception as exc:
            logger.info("MCP server %s stopped with an error", self.target, exc_info=exc)
            if not ready.done():
                cause = _leaf(exc)
                ready.set_exception(
                    ConfigurationError(
                        f"could not start MCP server {self.target!r}: "
                        f"{type(cause).__name__}: {cause}{self._stderr()}"
                    )
                )
        finally:
            self._session = None

    def _stderr(self) -> str:
        if self._errlog is None or self._errlog.closed:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self._errlog.seek(0)
            lines = [line.strip() for line in self._errlog.read().splitlines() if line.strip()]
            if lines:
                return f"; its last error output: {lines[-1][:300]}"
        return ""

    async def call(self, tool_name: str, arguments: dict[str, Any]) -> Any:
        """Call one of the server's tools; returns its structured content, else its text.

        Raises:
            ToolError: The server is gone, the call timed out, or the server reported an error.
        """
        session = self._session
        if session is None or not self.connected:
            raise ToolError(f"MCP server {self.name!r} is not connected; add it again")
        try:
            result = await asyncio.wait_for(session.call_tool(tool_name, arguments), self.timeout)
        except TimeoutError:
            raise ToolError(
                f"{tool_name} on MCP server {self.name!r} did not answer within {self.timeout:g} s"
            ) from None
        except ToolError:
            raise
        except Exception as exc:
            cause = _leaf(exc)
            raise ToolError(
                f"{tool_name} on MCP server {self.name!r} failed: {type(cause).__name__}: {cause}"
            ) from exc
        text = "\n".join(
            str(getattr(block, "text", "")) or f"[{getattr(block, 'type', 'content')}]"
            for block in result.content
        )
        if result.is_error:
            raise ToolError(text or f"{tool_name} on MCP server {self.name!r} reported an error")
        if result.structured_content is not None:
            return result.structured_content
        return text

    async def close(self) -> None:
        """End the session and, for a stdio server, its process (idempotent)."""
        owner = self._owner
        if self._closing is not None:
            self._closing.set()
        if owner is not None and not owner.done():
            try:
                await asyncio.wait_for(asyncio.shield(owner), 10)
            except TimeoutError:
                owner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await owner
        self._session = None


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside the task-group exception groups the SDK raises."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class McpServers:
    """The MCP servers of one engine, by name."""

    def __init__(self) -> None:
        self._servers: dict[str, McpServer] = {}

    def __iter__(self) -> Any:
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
