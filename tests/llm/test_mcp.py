"""MCP tools from real servers installed from PyPI: mcp-server-time and mcp-server-git (stdio)."""

from __future__ import annotations

import subprocess
import sys
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
    ToolApprovalRequestedEvent,
    ToolCallEvent,
    ToolResultEvent,
)
from llmgine.llm.mcp import McpTool, safe_url

pytestmark = pytest.mark.timeout(120)

TIME_SERVER = [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]
GIT_SERVER = [sys.executable, "-m", "mcp_server_git"]


# mcp-server-time's own server object, served over streamable HTTP instead of stdio.
@pytest.fixture
def time_server_url(mcp_time_server: str) -> str:
    """mcp-server-time's streamable-HTTP endpoint on 127.0.0.1."""
    return f"{mcp_time_server}/mcp"


def _results(bus: MessageBus) -> list[ToolResultEvent]:
    results: list[ToolResultEvent] = []
    bus.register_event_handler(ToolResultEvent, results.append)
    return results


async def test_time_server_tools_run_through_the_engine_with_events_and_spans(
    bus: MessageBus,
    read_log: Callable[[Path | None], list[dict[str, Any]]],
    child_pids: Callable[[], set[int]],
) -> None:
    script = [
        ScriptedProvider.call("get_current_time", call_id="t1", timezone="Europe/Paris"),
        "It is evening in Paris.",
    ]
    engine = LLMEngine(bus, provider=ScriptedProvider(script))
    before = child_pids()
    server = await engine.add_mcp_server(command=TIME_SERVER)
    try:
        assert server.name == "mcp-time"
        assert {"get_current_time", "convert_time"} <= {t.name for t in engine.tools}
        definition = engine.tools.get("get_current_time").definition()  # type: ignore[union-attr]
        assert definition["function"]["parameters"]["required"] == ["timezone"]
        calls: list[ToolCallEvent] = []
        bus.register_event_handler(ToolCallEvent, calls.append)
        results = _results(bus)
        reply = await bus.execute(PromptCommand(prompt="What time is it in Paris?"))
        assert reply.result == "It is evening in Paris."
        await bus.wait_for_events()
        assert [c.tool_name for c in calls] == ["get_current_time"]
        assert results[0].error is None
        assert results[0].result["timezone"] == "Europe/Paris"
        assert results[0].result["datetime"].endswith(("+01:00", "+02:00"))
        spans = [
            line["data"]
            for line in read_log(bus.log_path)
            if line["type"] == "TraceEvent"
            and line["data"].get("name") == "execute_tool get_current_time"
        ]
        assert spans, "no TOOL span for the MCP tool"
        assert all(s["attributes"]["mcp.server"] == "mcp-time" for s in spans)
        assert spans[0]["span_kind"] == "TOOL"
        assert len(child_pids() - before) == 1  # the server's process
    finally:
        await engine.close()
    assert child_pids() - before == set()  # the process ended with the engine
    assert "get_current_time" not in engine.tools


async def test_the_offline_model_naming_an_mcp_tool_calls_it(bus: MessageBus) -> None:
    engine = LLMEngine(bus, model="offline")
    await engine.add_mcp_server(command=TIME_SERVER, name="clock")
    try:
        reply = await engine.chat("Use get_current_time with timezone=Asia/Tokyo please")
    finally:
        await engine.close()
    assert "get_current_time returned" in reply
    assert '"timezone": "Asia/Tokyo"' in reply


async def test_bad_arguments_server_errors_and_timeouts_go_back_to_the_model(
    bus: MessageBus,
) -> None:
    script = [
        ScriptedProvider.call("get_current_time", call_id="a", zone="Paris"),
        ScriptedProvider.call("get_current_time", call_id="b", timezone="Nowhere/Atlantis"),
        "Sorry.",
    ]
    engine = LLMEngine(bus, provider=ScriptedProvider(script))
    results = _results(bus)
    await engine.add_mcp_server(command=TIME_SERVER)
    try:
        assert (await bus.execute(PromptCommand(prompt="time?"))).result == "Sorry."
        await bus.wait_for_events()
        invalid, failed = (r.error for r in results)
        assert invalid is not None and failed is not None
        assert invalid.startswith("invalid arguments for get_current_time:")
        assert "'timezone' is a required property" in invalid
        assert "Invalid timezone" in failed and "Nowhere/Atlantis" in failed
        server = engine.mcp_servers.get("mcp-time")
        assert server is not None
        server.timeout = 1e-9  # no server answers that fast: the timeout path
        tool = engine.tools.get("convert_time")
        assert isinstance(tool, McpTool)
        from llmgine import ToolError

        with pytest.raises(ToolError, match="did not answer within"):
            await tool.run({"source_timezone": "UTC", "time": "12:00", "target_timezone": "UTC"})
    finally:
        await engine.close()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit and one unstaged change."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=Ada", "-c", "user.email=ada@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "notes.txt").write_text("first line\n")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Add the notes"], check=True)
    (repo / "notes.txt").write_text("first line\nsecond line\n")
    return repo


async def test_git_server_on_a_temporary_repository(bus: MessageBus, repo: Path) -> None:
    script = [
        ScriptedProvider.call("git_log", call_id="g1", repo_path=str(repo), max_count=5),
        ScriptedProvider.call("git_diff_unstaged", call_id="g2", repo_path=str(repo)),
        "One commit, one unstaged change.",
    ]
    engine = LLMEngine(bus, provider=ScriptedProvider(script))
    results = _results(bus)
    await engine.add_mcp_server(command=GIT_SERVER, name="git")
    try:
        reply = await bus.execute(PromptCommand(prompt="What happened in the repo?"))
        assert reply.result == "One commit, one unstaged change."
        await bus.wait_for_events()
        log, diff = results
        assert log.error is None and diff.error is None
        assert "Add the notes" in str(log.result)
        assert "Ada" in str(log.result)
        assert "+second line" in str(diff.result)
    finally:
        await engine.close()


async def test_approval_applies_to_mcp_tools_too(bus: MessageBus) -> None:
    script = [ScriptedProvider.call("get_current_time", timezone="UTC"), "Not asked."]
    engine = LLMEngine(bus, provider=ScriptedProvider(script))
    engine.approvals.timeout = 0.01
    asked: list[ToolApprovalRequestedEvent] = []
    bus.register_event_handler(ToolApprovalRequestedEvent, asked.append)
    await engine.add_mcp_server(command=TIME_SERVER, requires_approval=True)
    try:
        assert (await bus.execute(PromptCommand(prompt="time"))).result == "Not asked."
        await bus.wait_for_events()
        assert [a.tool_name for a in asked] == ["get_current_time"]
    finally:
        await engine.close()


async def test_a_server_that_cannot_start_is_one_clear_error(
    bus: MessageBus, child_pids: Callable[[], set[int]]
) -> None:
    engine = LLMEngine(bus)
    before = child_pids()
    with pytest.raises(ConfigurationError, match="could not start MCP server") as info:
        await engine.add_mcp_server(command=[sys.executable, "-c", "import sys; sys.exit(3)"])
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigurationError, match="either command"):
        await engine.add_mcp_server()
    with pytest.raises(ConfigurationError, match="non-empty list"):
        await engine.add_mcp_server(command="mcp-server-time")  # type: ignore[arg-type]
    assert len(engine.mcp_servers) == 0
    assert child_pids() - before == set()


async def test_names_are_unique_and_remove_withdraws_the_tools(bus: MessageBus) -> None:
    engine = LLMEngine(bus)

    @engine.tool
    def get_current_time(timezone: str) -> str:
        """A local tool with the same name as the server's."""
        return "local"

    with pytest.raises(ConfigurationError, match="names are taken: get_current_time"):
        await engine.add_mcp_server(command=TIME_SERVER)
    engine.tools.unregister("get_current_time")
    await engine.add_mcp_server(command=TIME_SERVER, name="clock")
    try:
        with pytest.raises(ConfigurationError, match="already added"):
            await engine.add_mcp_server(command=TIME_SERVER, name="clock")
        with pytest.raises(ConfigurationError, match="no MCP server named 'nope'; added servers: "):
            await engine.remove_mcp_server("nope")
        await engine.remove_mcp_server("clock")
        assert "get_current_time" not in engine.tools
        assert len(engine.mcp_servers) == 0
    finally:
        await engine.close()


def test_urls_never_show_their_credentials() -> None:
    assert "s3cret" not in safe_url("https://user:s3cret@mcp.example.org/mcp")
    assert "s3cret" not in safe_url("https://mcp.example.org/mcp?token=s3cret&x=1")
    assert safe_url("http://127.0.0.1:8000/mcp") == "http://127.0.0.1:8000/mcp"


async def test_a_streamable_http_server_by_url(bus: MessageBus, time_server_url: str) -> None:
    script = [
        ScriptedProvider.call(
            "convert_time", source_timezone="UTC", time="12:00", target_timezone="Asia/Tokyo"
        ),
        "Noon in UTC is nine in the evening in Tokyo.",
    ]
    engine = LLMEngine(bus, provider=ScriptedProvider(script))
    results = _results(bus)
    with_credentials = time_server_url.replace("http://", "http://someone:s3cret@")
    server = await engine.add_mcp_server(url=with_credentials, name="http-clock")
    try:
        assert "s3cret" not in repr(server) and "s3cret" not in server.target
        reply = await bus.execute(PromptCommand(prompt="noon UTC in Tokyo?"))
        assert reply.result == "Noon in UTC is nine in the evening in Tokyo."
        await bus.wait_for_events()
        assert results[0].error is None
        assert results[0].result["target"]["datetime"].endswith("T21:00:00+09:00")
    finally:
        await engine.close()
    assert not server.connected
