"""``%llmgine mcp`` with real servers: tokens in URLs stay hidden, commands are found in the
kernel's own environment even when its ``bin`` is not on ``PATH``."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from llmgine.notebook import get_engine

pytestmark = pytest.mark.timeout(120)

SECRET = "s3cr3t-T0KEN"


def magic(shell: InteractiveShell, line: str) -> object:
    return shell.run_line_magic("llmgine", line)


def test_a_token_in_an_mcp_url_never_shows(
    shell: InteractiveShell, mcp_time_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    magic(shell, "start --quiet")
    url = f"{mcp_time_server}/mcp?token={SECRET}"
    note = repr(magic(shell, f"mcp add --name web --url {url}"))
    assert note.startswith("MCP server `web` added; tools: `get_current_time`")
    listed = repr(magic(shell, "mcp list"))
    assert "| `web` |" in listed and "token=***" in listed
    server = get_engine().mcp_servers.get("web")
    assert server is not None
    shown = [note, listed, repr(server), server.target, repr(server.tools[0])]
    # A URL the server answers with an HTTP error: the error names the URL.
    failed = shell.run_cell(
        f"%llmgine mcp add --name lost --url {mcp_time_server}/nope?token={SECRET}"
    )
    error = str(failed.error_in_exec)
    assert "could not start MCP server" in error and "token=***" in error
    shown.append(error)
    for text in [*shown, caplog.text]:
        assert SECRET not in text


def test_mcp_add_finds_a_command_of_the_kernels_environment_off_path(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = os.path.dirname(sys.executable)
    assert (Path(here) / "mcp-server-time").exists(), "the dev extra installs mcp-server-time"
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != here]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    magic(shell, "start --quiet")
    note = repr(magic(shell, "mcp add -- mcp-server-time --local-timezone UTC"))
    assert note == "MCP server `mcp-time` added; tools: `get_current_time`, `convert_time`"
    missing = shell.run_cell("%llmgine mcp add -- no-such-mcp-server")
    error = str(missing.error_in_exec)
    assert "cannot find the MCP server command 'no-such-mcp-server'" in error
    assert f"looked in {here}" in error and "and on PATH" in error


# A stdio MCP server with a tool name the model's API rejects and a tool with a broken schema.
ODD_SERVER = """
import anyio
import mcp.types as types
from mcp.server import Server
from mcp.server.stdio import stdio_server

WORD = {"type": "object", "properties": {"word": {"type": "string"}}}
BROKEN = {"type": "object", "properties": {"word": {"type": "strin"}}}

async def list_tools(ctx, params):
    return types.ListToolsResult(tools=[
        types.Tool(name="say word", description="say it", input_schema=WORD),
        types.Tool(name="broken", description="broken", input_schema=BROKEN),
    ])

async def call_tool(ctx, params):
    return types.CallToolResult(content=[types.TextContent(type="text", text=params.name)])

server = Server("odd", on_list_tools=list_tools, on_call_tool=call_tool)

async def main():
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())

anyio.run(main)
"""


def test_mcp_add_says_which_tools_were_renamed_or_left_out(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    (tmp_path / "odd_server.py").write_text(ODD_SERVER)
    magic(shell, "start --quiet")
    note = repr(magic(shell, f"mcp add -- {sys.executable} {tmp_path / 'odd_server.py'}"))
    assert note.startswith("MCP server `odd` added; tools: `say_word`")
    assert "renamed for the model (names its API rejects): 'say word' as `say_word`" in note
    assert "left out: 'broken' (its input schema is not valid JSON Schema" in note
