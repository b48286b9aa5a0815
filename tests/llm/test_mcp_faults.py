"""MCP servers that misbehave: backtracking patterns, bad tool names and schemas, early deaths,
tokens in URLs, processes that must end with the bus.

The servers are real: a small stdio server written with the ``mcp`` SDK (its tools come from a
JSON file, so each test lists the names and schemas it needs), mcp-server-time, and a
streamable-HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmgine import (
    ConfigurationError,
    LLMEngine,
    MessageBus,
    PromptCommand,
    ScriptedProvider,
    ToolError,
    ToolResultEvent,
)
from llmgine.llm.mcp import McpTool
from llmgine.llm.mcp.names import fit_name, is_valid_name

pytestmark = pytest.mark.timeout(120)

TIME_SERVER = [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]

# A stdio MCP server whose tools are read from the JSON file named by argv[1]: each call
# answers with the name it was called by and its arguments; a tool called "exits" ends the
# server's process instead (it dies in the middle of the call).
TOOLS_SERVER = """
import json, os, sys
import anyio
import mcp.types as types
from mcp.server import Server
from mcp.server.stdio import stdio_server

TOOLS = json.loads(open(sys.argv[1]).read())

async def list_tools(ctx, params):
    return types.ListToolsResult(
        tools=[types.Tool(name=t["name"], description="a test tool", input_schema=t["schema"])
               for t in TOOLS]
    )

async def call_tool(ctx, params):
    if params.name == "exits":
        print("out of memory, exiting", file=sys.stderr, flush=True)
        os._exit(3)
    text = json.dumps({"called": params.name, "arguments": params.arguments})
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

server = Server("tools-server", on_list_tools=list_tools, on_call_tool=call_tool)

async def main():
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())

anyio.run(main)
"""

WORD = {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}


def _tools_server(tmp_path: Path, tools: list[dict[str, Any]]) -> list[str]:
    """The command line of a stdio server offering ``tools`` (name and schema each)."""
    (tmp_path / "tools_server.py").write_text(TOOLS_SERVER)
    (tmp_path / "tools.json").write_text(json.dumps(tools))
    return [sys.executable, str(tmp_path / "tools_server.py"), str(tmp_path / "tools.json")]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ------------------------------------------------------------------ item 12: backtracking


async def test_a_backtracking_pattern_is_cut_off_while_the_event_loop_runs_on(
    bus: MessageBus, tmp_path: Path
) -> None:
    def word(pattern: str) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"word": {"type": "string", "pattern": pattern}},
            "required": ["word"],
        }

    tools = [
        {"name": "nested", "schema": word("^(a+)+$")},
        {"name": "either", "schema": word("^(a|a)+$")},
    ]
    engine = LLMEngine(bus)
    await engine.add_mcp_server(command=_tools_server(tmp_path, tools))
    try:
        nested, either = engine.tools.get("nested"), engine.tools.get("either")
        assert isinstance(nested, McpTool) and isinstance(either, McpTool)
        # 40 a's and a '!': Python's re needs about 2**40 steps to refuse it for both patterns.
        bad = {"word": "a" * 40 + "!"}
        with pytest.raises(ToolError, match=r"does not match '\^\(a\+\)\+\$'"):
            await nested.run(bad)
        check = asyncio.create_task(either.run(bad))
        beats = 0
        while not check.done():  # the loop answers while the argument is being checked
            beats += 1
            await asyncio.sleep(0.01)
        assert beats > 1
        with pytest.raises(ToolError, match="could not be checked") as info:
            check.result()
        assert "'^(a|a)+$'" in str(info.value)
        assert "the call was not sent" in str(info.value)
        # A value the pattern answers quickly still goes through, or is refused as usual.
        assert json.loads(await either.run({"word": "aaaa"}))["arguments"] == {"word": "aaaa"}
        with pytest.raises(ToolError, match="'b' does not match"):
            await either.run({"word": "b"})
    finally:
        await engine.close()


async def test_pattern_checks_never_run_on_the_event_loops_thread_even_before_an_approval(
    bus: MessageBus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmgine.llm.mcp import schema

    threads: list[threading.Thread] = []
    real_search = schema._search

    def search(pattern: str, text: str) -> bool:  # a spy: the real search, and where it ran
        threads.append(threading.current_thread())
        return real_search(pattern, text)

    monkeypatch.setattr(schema, "_search", search)
    tool_schema = {
        "type": "object",
        "properties": {"word": {"type": "string", "pattern": "^(a|a)+$"}},
        "required": ["word"],
    }
    script = [ScriptedProvider.call("either", call_id="e1", word="a" * 40 + "!"), "checked"]
    engine = LLMEngine(bus, provider=ScriptedProvider(script))
    results: list[ToolResultEvent] = []
    bus.register_event_handler(ToolResultEvent, results.append)
    command = _tools_server(tmp_path, [{"name": "either", "schema": tool_schema}])
    await engine.add_mcp_server(command=command, requires_approval=True)
    try:
        assert (await bus.execute(PromptCommand(prompt="check it"))).result == "checked"
        await bus.wait_for_events()
    finally:
        await engine.close()
    assert results[0].error is not None and "could not be checked" in results[0].error
    assert threads and threading.current_thread() not in threads


async def test_a_backtracking_property_name_pattern_is_cut_off_too(
    bus: MessageBus, tmp_path: Path
) -> None:
    schema = {
        "type": "object",
        "patternProperties": {"^(a|a)+$": {"type": "string"}},
        "additionalProperties": False,
    }
    engine = LLMEngine(bus)
    await engine.add_mcp_server(
        command=_tools_server(tmp_path, [{"name": "keys", "schema": schema}])
    )
    try:
        tool = engine.tools.get("keys")
        assert isinstance(tool, McpTool)
        with pytest.raises(ToolError, match="could not be checked"):
            await tool.run({"a" * 40 + "!": "x"})
        with pytest.raises(ToolError, match="Additional properties are not allowed"):
            await tool.run({"b": "x"})
        assert json.loads(await tool.run({"aaa": "x"}))["arguments"] == {"aaa": "x"}
    finally:
        await engine.close()


# --------------------------------------------------------------- item 13: ends with the bus


@pytest.mark.timeout(60)
async def test_stopping_the_bus_ends_the_mcp_server_process(
    tmp_path: Path, child_pids: Callable[[], set[int]]
) -> None:
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    await bus.start()
    engine = LLMEngine(bus)
    before = child_pids()
    await engine.add_mcp_server(command=TIME_SERVER, name="clock")
    (pid,) = child_pids() - before
    assert _alive(pid)
    await bus.stop()
    assert not _alive(pid)
    assert len(engine.mcp_servers) == 0
    assert "get_current_time" not in engine.tools


# ----------------------------------------------------- item 16: names, schemas, early deaths


def test_tool_names_the_api_rejects_are_fitted_the_same_way_every_time() -> None:
    assert fit_name("get_time-2") == "get_time-2"
    assert fit_name("get time") == "get_time"
    assert fit_name("get\ntime") == "get_time"
    assert fit_name("files/read file") == "files_read_file"
    long = fit_name("x" * 100)
    assert len(long) == 64 and long == fit_name("x" * 100) and long.startswith("x" * 55 + "_")
    assert fit_name("x" * 100) != fit_name("x" * 101)
    assert is_valid_name(fit_name("¿¡!"))
    assert not is_valid_name("ok\n")  # a trailing newline is not a valid name


async def test_bad_tool_names_are_renamed_and_bad_schemas_left_out_at_add(
    bus: MessageBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    long_name = "read_" + "x" * 80
    tools = [
        {"name": "get time", "schema": WORD},
        {"name": "get\ntime", "schema": WORD},
        {"name": long_name, "schema": WORD},
        {"name": "ok_tool", "schema": WORD},
        {"name": "twice", "schema": WORD},
        {"name": "twice", "schema": WORD},
        {"name": "typo", "schema": {"type": "object", "properties": {"n": {"type": "strin"}}}},
        {"name": "bad_regex", "schema": {"type": "object", "properties": {"n": {"pattern": "("}}}},
        {"name": "either", "schema": {"type": "object", "anyOf": [WORD, {"required": ["n"]}]}},
    ]
    script = [
        ScriptedProvider.call("get_time", call_id="c1", word="hello"),
        "done",
    ]
    engine = LLMEngine(bus, provider=ScriptedProvider(script))
    results: list[ToolResultEvent] = []
    bus.register_event_handler(ToolResultEvent, results.append)
    with caplog.at_level(logging.WARNING, logger="llmgine.llm.mcp"):
        server = await engine.add_mcp_server(command=_tools_server(tmp_path, tools), name="odd")
    try:
        names = [t.name for t in server.tools]
        assert all(is_valid_name(n) for n in names)
        assert len(names) == len(set(names)) == 4
        assert server.renamed["get_time"] == "get time"
        renamed_newline = next(n for n, r in server.renamed.items() if r == "get\ntime")
        assert renamed_newline.startswith("get_time_") and renamed_newline != "get_time"
        assert next(n for n, r in server.renamed.items() if r == long_name) == fit_name(long_name)
        assert "ok_tool" in names and "ok_tool" not in server.renamed
        assert set(server.refused) == {"twice", "typo", "bad_regex", "either"}
        assert "anyOf at the top level" in server.refused["either"]
        assert "more than once" in server.refused["twice"]
        assert "not valid JSON Schema" in server.refused["typo"]
        assert "'(' is not a 'regex'" in server.refused["bad_regex"]
        assert "offered to the model as 'get_time'" in caplog.text
        assert "'typo' is left out" in caplog.text
        for definition in engine.tools.definitions():
            assert is_valid_name(definition["function"]["name"])
        # The model calls the new name; the server is called by its own.
        assert (await bus.execute(PromptCommand(prompt="time?"))).result == "done"
        await bus.wait_for_events()
        assert results[0].error is None
        assert json.loads(results[0].result)["called"] == "get time"
    finally:
        await engine.close()


async def test_tool_names_taken_by_local_tools_or_other_servers_are_refused(
    bus: MessageBus, tmp_path: Path
) -> None:
    engine = LLMEngine(bus)
    command = _tools_server(tmp_path, [{"name": "get time", "schema": WORD}])
    await engine.add_mcp_server(command=command, name="first")
    try:
        with pytest.raises(ConfigurationError, match="names are taken: get_time"):
            await engine.add_mcp_server(command=command, name="second")
        assert [s.name for s in engine.mcp_servers] == ["first"]
    finally:
        await engine.close()


async def test_a_server_that_dies_at_start_shows_its_last_error_lines(
    bus: MessageBus, child_pids: Callable[[], set[int]]
) -> None:
    engine = LLMEngine(bus)
    dying = "import sys\nfor i in range(8): print(f'problem {i}', file=sys.stderr)\nsys.exit(3)"
    before = child_pids()
    with pytest.raises(ConfigurationError, match="could not start MCP server") as info:
        await engine.add_mcp_server(command=[sys.executable, "-c", dying])
    message = str(info.value)
    assert "problem 3 | problem 4 | problem 5 | problem 6 | problem 7" in message
    assert "problem 2" not in message and "\n" not in message
    assert child_pids() - before == set()


def test_input_schemas_a_tool_cannot_have_are_named_with_the_reason() -> None:
    from llmgine.llm.mcp.schema import schema_problem

    assert schema_problem(WORD) is None
    assert schema_problem({"type": "object"}) is None
    assert "of type 'string'; a tool takes an object" in str(schema_problem({"type": "string"}))
    assert "not a JSON object" in str(schema_problem(["type", "object"]))
    assert "oneOf at the top level" in str(schema_problem({"oneOf": [WORD, WORD]}))
    options = {  # jsonschema matches these patterns with re, out of reach of the bound
        "type": "object",
        "allOf": [{"patternProperties": {"^(a+)+$": {}}}],
        "unevaluatedProperties": False,
    }
    unbounded = {"type": "object", "properties": {"options": options}}
    assert "cannot be checked within a time bound" in str(schema_problem(unbounded))


@pytest.mark.timeout(90)
async def test_without_the_mcp_sdk_adding_a_server_fails_at_once_saying_what_to_install(
    bus: MessageBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # as in `pip install llmgine`, no extra
    engine = LLMEngine(bus)
    with pytest.raises(ConfigurationError, match=r"pip install 'llmgine\[mcp\]'"):
        await engine.add_mcp_server(command=[sys.executable, "-c", "pass"])


# ------------------------------------------------------------- a server that dies later


async def test_a_server_that_dies_later_says_which_one_and_what_to_do_once_in_the_log(
    bus: MessageBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = [
        ScriptedProvider.call("exits", call_id="c1", word="now"),
        "it died",
        ScriptedProvider.call("echo", call_id="c2", word="hello"),
        "still dead",
        ScriptedProvider.call("echo", call_id="c3", word="again"),
        "back",
    ]
    engine = LLMEngine(bus, provider=ScriptedProvider(script))
    results: list[ToolResultEvent] = []
    bus.register_event_handler(ToolResultEvent, results.append)
    command = _tools_server(
        tmp_path, [{"name": "exits", "schema": WORD}, {"name": "echo", "schema": WORD}]
    )
    await engine.add_mcp_server(command=command, name="files")
    try:
        with caplog.at_level(logging.WARNING, logger="llmgine.llm.mcp"):
            assert (await bus.execute(PromptCommand(prompt="die"))).result == "it died"
            assert (await bus.execute(PromptCommand(prompt="echo"))).result == "still dead"
        await bus.wait_for_events()
        died, after = results[0].error or "", results[1].error or ""
        gone = "MCP server 'files' (" + " ".join(command) + ") is gone: its process ended"
        advice = (
            "remove it with engine.remove_mcp_server('files') and add it again with "
            "engine.add_mcp_server(...)"
        )
        assert died.startswith(f"exits failed: {gone}") and advice in died
        assert "its last error output: out of memory, exiting" in died
        assert after.startswith(f"echo was not run: {gone}") and advice in after
        assert [r.getMessage() for r in caplog.records if "is gone" in r.getMessage()] == [
            died.removeprefix("exits failed: ") + "."
        ]
        # As the message says: removed and added again, the server runs its tools again.
        await engine.remove_mcp_server("files")
        await engine.add_mcp_server(command=command, name="files")
        assert (await bus.execute(PromptCommand(prompt="echo"))).result == "back"
        await bus.wait_for_events()
        assert results[2].error is None
        assert json.loads(results[2].result)["arguments"] == {"word": "again"}
    finally:
        await engine.close()
