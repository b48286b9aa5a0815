"""The magics in a real Jupyter kernel, driven by nbclient: the bus lives on the kernel's loop."""

from __future__ import annotations

import json
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


def run_notebook(tmp_path: Path) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
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
    assert 'You said: "Hello {there} $x"' in text(cells[8])
    assert "offline model" in text(cells[8])
    assert 'You said: "Is it sunny in Paris?"' in text(cells[9])  # not a help request
    assert cells[10].outputs == []  # %llmgine? shows the help in the pager, as IPython does
    (error,) = cells[11].outputs
    assert error.ename == "MagicError"
    assert error.traceback == [
        "llmgine: unknown subcommand 'frobnicate'; use one of: start, stop, connect, status, "
        "register, handlers, execute, publish, chat, model, tools, ui, monitor, form, log, "
        "metrics, spans, commands, help (`%llmgine help`)"
    ]
    assert text(cells[12]) == "2"  # the kernel is still usable
    assert text(cells[13]) == "llmgine bus stopped; its log is flushed and closed"
    log = tmp_path / "logs" / "kernel.jsonl"
    types = [json.loads(line)["type"] for line in log.read_text().splitlines()]
    assert types.count("PingCommand") == 2
    assert types.count("PingedEvent") == 1
    assert types.count("PromptCommand") == 2
    assert types.count("LLMResponseEvent") == 2
