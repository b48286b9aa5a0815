"""The magics in a real Jupyter kernel, driven by nbclient: the bus lives on the kernel's loop."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

CELLS = [
    "%load_ext llmgine",
    "%llmgine start --log-file kernel.jsonl --quiet",
    (
        "from llmgine import Command, Event\n"
        "from llmgine.notebook import get_bus\n"
        "class PingCommand(Command):\n"
        "    n: int = 1\n"
        "class PingedEvent(Event):\n"
        "    n: int\n"
        "pongs = []\n"
        "def on_ping(cmd):\n"
        "    return cmd.n * 10\n"
        "def on_pinged(event):\n"
        "    pongs.append(event.n)"
    ),
    "%llmgine register PingCommand on_ping\n%llmgine register PingedEvent on_pinged",
    "r = %llmgine execute PingCommand(n=4)\nr.result",
    "result = await get_bus().execute(PingCommand(n=5))\nresult.result",
    "await get_bus().publish(PingedEvent(n=7))  # no waiting: handled while the kernel is idle",
    "pongs",
    "%llmgine chat Hello {there} $x",
    "%llmgine chat Is it sunny in Paris?",
    "%llmgine?",
    "%llmgine frobnicate",
    "1 + 1",
    "%llmgine stop",
]


def run_notebook(tmp_path: Path, cells: list[str] = CELLS) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    return nb


def text(cell: Any) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(output.data.get("text/markdown") or output.data.get("text/plain", ""))
    return "".join(parts)


def test_a_notebook_using_the_magics_runs_in_a_real_kernel(tmp_path: Path) -> None:
    nb = run_notebook(tmp_path)
    cells = nb.cells
    errors = [i for i, c in enumerate(cells) if any(o.output_type == "error" for o in c.outputs)]
    assert errors == [11], [text(cells[i]) for i in errors]
    assert text(cells[1]) == "llmgine bus running; log: `logs/kernel.jsonl`"
    assert text(cells[4]) == "40"
    assert text(cells[5]) == "50"  # top-level await on the kernel's own loop
    assert text(cells[7]) == "[7]"  # the event was handled between cells
    assert len(cells[8].outputs) == 1  # the reply alone: no blank live area saved before it
    assert 'You said: "Hello {there} $x"' in text(cells[8])
    assert "offline model" in text(cells[8])
    assert 'You said: "Is it sunny in Paris?"' in text(cells[9])  # not a help request
    assert cells[10].outputs == []  # %llmgine? shows the help in the pager, as IPython does
    (error,) = cells[11].outputs
    assert error.ename == "MagicError"
    assert error.traceback == [
        "llmgine: unknown subcommand 'frobnicate'; use one of: start, stop, connect, status, "
        "register, handlers, execute, publish, chat, map, conversations, model, tools, approve, "
        "deny, mcp, ui, monitor, form, log, metrics, spans, commands, cost, cache, export, "
        "help (`%llmgine help`)"
    ]
    assert text(cells[12]) == "2"  # the kernel is still usable
    assert text(cells[13]) == "llmgine bus stopped; its log is flushed and closed"
    log = tmp_path / "logs" / "kernel.jsonl"
    types = [json.loads(line)["type"] for line in log.read_text().splitlines()]
    assert types.count("PingCommand") == 2
    assert types.count("PingedEvent") == 1
    assert types.count("PromptCommand") == 2
    assert types.count("LLMResponseEvent") == 2


def test_an_mcp_server_added_in_a_kernel_answers_chats_and_stops_with_the_bus(
    tmp_path: Path,
) -> None:
    cells = [
        "%load_ext llmgine",
        "%llmgine start --log-file mcp.jsonl --quiet",
        f"%llmgine mcp add -- {sys.executable} -m mcp_server_time --local-timezone UTC",
        "%llmgine chat What does get_current_time say for timezone=Asia/Tokyo?",
        "%llmgine mcp list",
        "%llmgine stop",
        "%llmgine mcp list",
        f"%llmgine mcp add --approval --name guarded -- {sys.executable} -m mcp_server_time",
        "%llmgine chat get_current_time timezone=Europe/Rome",
    ]
    nb = run_notebook(tmp_path, cells)
    errors = [c for c in nb.cells if any(o.output_type == "error" for o in c.outputs)]
    assert errors == []
    added, chat, listed, _, after, _, guarded = (text(c) for c in nb.cells[2:])
    # nbclient gives the kernel no input line: the approval is denied at once, saying why.
    assert "get_current_time was not run: the user denied the call" in guarded
    assert "approve tool calls in the chat panel" in guarded
    assert added == "MCP server `mcp-time` added; tools: `get_current_time`, `convert_time`"
    assert '"timezone": "Asia/Tokyo"' in chat
    assert "| `mcp-time` |" in listed
    assert after.startswith("no MCP servers yet")  # stop ended the server
    log = (tmp_path / "logs" / "mcp.jsonl").read_text()
    assert '"mcp.server":"mcp-time"' in log.replace(" ", "")


def test_an_interactive_frontend_sees_the_reply_stream_into_one_output(tmp_path: Path) -> None:
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    messages: list[dict[str, Any]] = []
    try:
        client.execute_interactive("%load_ext llmgine\n%llmgine start --quiet", timeout=60)
        reply = client.execute_interactive(
            "%llmgine chat Tell me about streams",
            timeout=60,
            allow_stdin=True,  # as JupyterLab sends it
            output_hook=messages.append,
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok"
    kinds = [m["msg_type"] for m in messages if m["msg_type"] != "status"]
    assert kinds.count("display_data") == 1  # one output, made at the first piece of text
    assert kinds.count("update_display_data") >= 2  # then updated in place as text arrives
    (shown,) = [m for m in messages if m["msg_type"] == "display_data"]
    last = [m for m in messages if m["msg_type"] == "update_display_data"][-1]
    assert shown["content"]["data"]["text/markdown"]  # never an empty output
    final = last["content"]["data"]["text/markdown"]
    assert 'You said: "Tell me about streams"' in final
    assert final.endswith('"openai:gpt-4o-mini".')
