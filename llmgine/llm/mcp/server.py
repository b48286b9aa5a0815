"""One MCP server: a stdio process or a streamable-HTTP endpoint, and its session.

The SDK's connection is a tree of async context managers that must be entered and
left by one task, so each server has an owner task that connects, waits until it is
told to close, and disconnects; calls from other tasks go through its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import traceback
from collections.abc import Sequence
from typing import Any

from llmgine._urls import hide_in_loggers, redact_text, redact_url, url_secrets
from llmgine.errors import ConfigurationError, ToolError
from llmgine.llm.mcp.command import resolve_command
from llmgine.llm.mcp.names import assign_names
from llmgine.llm.mcp.schema import schema_problem
from llmgine.llm.mcp.tool import McpTool

__all__ = ["McpServer", "safe_url"]

logger = logging.getLogger(__name__)

DEFAULT_CALL_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 60.0
STDERR_LINES = 5
"""How many of a failed server's last lines of error output its error shows."""


def _sdk() -> Any:
    try:
        import mcp
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise ConfigurationError(
            "MCP servers need the official MCP SDK: pip install 'llmgine[mcp]'"
        ) from exc
    return mcp


def safe_url(url: str) -> str:
    """``url`` with its credentials (``user:secret@``, ``?token=...``) hidden."""
    return redact_url(url)


_URL_LOGGERS = ("httpx", "httpx2", "mcp.client.streamable_http")
"""Loggers that write a server's URL as it is ("HTTP Request: POST http://...?token=...")."""


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside the task-group exception groups the SDK raises."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _connection_lost(cause: BaseException) -> bool:
    """Whether ``cause`` says the session's connection is gone (the server died or hung up)."""
    import anyio

    if isinstance(cause, anyio.ClosedResourceError | anyio.BrokenResourceError | anyio.EndOfStream):
        return True
    from mcp.shared.exceptions import MCPError
    from mcp.types import CONNECTION_CLOSED

    return (
        isinstance(cause, MCPError)
        and cause.code == CONNECTION_CLOSED
        and "closed" in cause.message.lower()
    )


class McpServer:
    """One MCP server: a stdio process (``command``) or a streamable-HTTP ``url``.

    Made by :meth:`McpServers.add <llmgine.llm.mcp.McpServers.add>`
    (``engine.add_mcp_server``); ``tools`` are known once it is connected.

    Args:
        command: The server's command line, e.g. ``["mcp-server-time"]``; a bare
            program name is looked up beside this Python (``sys.executable``) first,
            then on ``PATH``.
        url: The endpoint of a streamable-HTTP server (instead of ``command``).
        env: Extra environment variables for the process (values never shown).
        cwd: The process's working directory.
        name: The name tools and spans show; defaults to the server's own name.
        timeout: Seconds one tool call may take before it fails.

    Attributes:
        tools: The tools offered to the model.
        renamed: Tool names offered to the model that differ from the server's own
            (offered name -> server's name): names the model's API would reject.
        refused: Tools left out (server's name -> why): a name listed twice, an
            invalid input schema.
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
        self.renamed: dict[str, str] = {}
        self.refused: dict[str, str] = {}
        self._session: Any = None
        self._owner: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._errlog: Any = None
        self._stderr_tail = ""
        self._gone: str | None = None
        """Why the server can take no more calls, once its connection was lost."""

    def __repr__(self) -> str:
        keys = f" env={sorted(self.env)}" if self.env else ""
        return f"<McpServer {self.name!r} {self.target}{keys} tools={[t.name for t in self.tools]}>"

    @property
    def target(self) -> str:
        """The command line or the URL (credentials hidden), for lists and errors."""
        return " ".join(self.command) if self.command else safe_url(self.url or "")

    @property
    def connected(self) -> bool:
        """Whether the session is open."""
        return self._session is not None and self._owner is not None and not self._owner.done()

    async def connect(self, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        """Start (or reach) the server, initialize the session and list its tools.

        Raises:
            ConfigurationError: The command is not found, or the server could not be
                started or did not answer (with its last lines of error output).
        """
        _sdk()  # without the mcp extra, say so now rather than time out waiting for the server
        command = resolve_command(self.command, self.env) if self.command is not None else None
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closing = asyncio.Event()
        self._owner = asyncio.create_task(
            self._serve(ready, command), name=f"llmgine-mcp {self.target}"
        )
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

    async def _serve(self, ready: asyncio.Future[None], command: list[str] | None) -> None:
        mcp = _sdk()
        if command is not None:  # the server's stderr, for errors; read before it is closed
            self._errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        try:
            async with contextlib.AsyncExitStack() as stack:
                if command is not None:
                    params = mcp.StdioServerParameters(
                        command=command[0], args=command[1:], env=self.env or None, cwd=self.cwd
                    )
                    read, write = await stack.enter_async_context(
                        mcp.stdio_client(params, errlog=self._errlog)
                    )
                else:
                    from mcp.client.streamable_http import streamable_http_client

                    hide_in_loggers(_URL_LOGGERS, self._secrets())

                    read, write = await stack.enter_async_context(
                        streamable_http_client(str(self.url))
                    )
                session = await stack.enter_async_context(mcp.ClientSession(read, write))
                info = await session.initialize()
                listed = await session.list_tools()
                self.name = self.name or str(info.server_info.name)
                self._make_tools(listed.tools)
                self._session = session
                ready.set_result(None)
                assert self._closing is not None
                await self._closing.wait()
        except Exception as exc:
            logger.info(
                "MCP server %s stopped with an error:\n%s",
                self.target,
                self._hide("".join(traceback.format_exception(exc))),
            )
            if not ready.done():
                cause = _leaf(exc)
                ready.set_exception(
                    ConfigurationError(
                        f"could not start MCP server {self.target!r}: "
                        f"{type(cause).__name__}: {self._hide(str(cause))}{self._stderr()}"
                    )
                )
        finally:
            self._session = None
            if self._errlog is not None:
                self._stderr_tail = self._stderr()
                self._errlog.close()

    def _secrets(self) -> list[str]:
        """The secret values of the server's URL (user part, password, token parameters)."""
        return url_secrets(self.url) if self.url else []

    def _hide(self, text: str) -> str:
        """``text`` with the credentials of every URL, and of the server's URL, hidden."""
        return redact_text(text, self._secrets())

    def _make_tools(self, listed: Sequence[Any]) -> None:
        """Offer the listed tools under names the API accepts; leave out what cannot be."""
        offered, refused = assign_names([str(t.name) for t in listed])
        by_name = {str(t.name): t for t in listed}
        tools: list[McpTool] = []
        renamed: dict[str, str] = {}
        for name, remote in offered.items():
            listed_tool = by_name[remote]
            tool = McpTool(
                self,
                name,
                str(listed_tool.description or ""),
                dict(listed_tool.input_schema),
                remote_name=remote,
            )
            problem = schema_problem(tool.parameters)
            if problem is not None:
                refused[remote] = problem
                continue
            if name != remote:
                renamed[name] = remote
            tools.append(tool)
        for name, remote in renamed.items():
            logger.warning(
                "MCP server %s: tool %r is offered to the model as %r (the API takes 1-64 "
                "characters of a-z, A-Z, 0-9, _ and -); calls still reach %r",
                self.name,
                remote,
                name,
                remote,
            )
        for remote, why in refused.items():
            logger.warning("MCP server %s: tool %r is left out: %s", self.name, remote, why)
        self.tools, self.renamed, self.refused = tools, renamed, refused

    def _stderr(self) -> str:
        """The server's last lines of error output, as one line for an error message."""
        if self._errlog is None or self._errlog.closed:
            return self._stderr_tail
        with contextlib.suppress(OSError, ValueError):
            self._errlog.seek(0)
            lines = [line.strip() for line in self._errlog.read().splitlines() if line.strip()]
            if lines:
                tail = " | ".join(line[:300] for line in lines[-STDERR_LINES:])
                return f"; its last error output: {self._hide(tail)}"
        return ""

    async def call(self, tool_name: str, arguments: dict[str, Any]) -> Any:
        """Call one of the server's tools by the server's own name.

        Returns its structured content, else its text.

        Raises:
            ToolError: The server is gone, the call timed out, or the server reported an error.
        """
        session = self._session
        if self._gone is not None:
            raise ToolError(f"{tool_name} was not run: {self._gone}")
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
            if _connection_lost(cause):
                raise ToolError(f"{tool_name} failed: {self._lost(cause)}") from exc
            raise ToolError(
                f"{tool_name} on MCP server {self.name!r} failed: "
                f"{type(cause).__name__}: {self._hide(str(cause))}"
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

    def _lost(self, cause: BaseException) -> str:
        """Note that the server is gone (a warning, once); what every later call then says."""
        if self._gone is None:
            what = "its process ended" if self.command else "its connection closed"
            self._gone = (
                f"MCP server {self.name!r} ({self.target}) is gone: {what} "
                f"({type(cause).__name__}: {self._hide(str(cause))}){self._stderr()}. Its tools "
                f"cannot run until it is restarted: remove it with "
                f"engine.remove_mcp_server({self.name!r}) and add it again with "
                "engine.add_mcp_server(...)"
            )
            logger.warning("%s.", self._gone)
            if self._closing is not None:
                self._closing.set()  # its owner task ends the dead session
        return self._gone

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
