"""Hostile ``%llmgine`` lines in a real kernel: one readable line each, the kernel lives.

The table is what a user trying to break the magics types: unknown and misspelt
subcommands, words after subcommands that take none, bad options and unbalanced
quotes, expressions that raise, classes with required fields, functions that
cannot be tools, logs that cannot be written. Every one must give exactly one
error output whose traceback is a single ``llmgine: ...`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

SETUP = [
    "%load_ext llmgine",
    "%llmgine start --log-file hostile.jsonl --quiet",
    (
        "from llmgine import Command, Event\n"
        "class PingCommand(Command):\n"
        "    n: int\n"
        "class PingedEvent(Event):\n"
        "    n: int\n"
        "class Strict(Command):\n"
        "    when: int\n"
        "    where: str\n"
        "pongs = []\n"
        "def on_ping(cmd):\n"
        "    return cmd.n\n"
        "def star(*args):\n"
        "    return args\n"
        "def keywords(**kw):\n"
        "    return kw\n"
        "def unresolved(x: 'NoSuchType') -> str:\n"
        "    return x\n"
        "def get_weather(city: str) -> str:\n"
        "    return 'sunny'\n"
        "not_callable = 42"
    ),
]

NO_ARGUMENTS = [
    "stop",
    "status",
    "handlers",
    "ui",
    "monitor",
    "metrics",
    "spans",
    "commands",
    "cost",
    "help",
]
EXTRA_WORDS = ["now", "now please", "--force", "'", '"', "x y z", "-h", "{x}", "$HOME", "🙂"]

# Lines after `%llmgine `; those starting with %% are `%%llmgine` cells (the body after a newline).
LINES: list[str] = [
    # no subcommand, unknown or misspelt subcommands
    "",
    "   ",
    "frobnicate",
    "START",
    "Start --quiet",
    "st",
    "--start",
    "-",
    "--",
    "'",
    '"',
    "'start'",
    "%llmgine",
    "1",
    "None",
    "__init__",
    "SUBCOMMANDS",
    "chat-",
    "execute(PingCommand(n=1))",
    "start;stop",
    "🙂",
    "\\",
    "help?",
    "stop now?",
    # words after subcommands that take none
    *[f"{name} {words}" for name in NO_ARGUMENTS for words in EXTRA_WORDS],
    # start
    "start --bogus",
    "start --log-dir",
    "start --log-file",
    "start positional",
    "start --quiet extra",
    "start --quiet=yes",
    "start --log-dir 'unclosed",
    'start --log-file "a.jsonl',
    "start --log-dir /proc/x",
    "start --log-file /",
    "start --log-dir /proc/x --quiet",
    "start --log-dir /dev/null",
    "start --log-file /proc/self/nope/x.jsonl",
    "start --log-dir 'a' 'b'",
    "start -q",
    "start --log-dir=",
    "start --log-file ''",
    "start --log-file=",
    # log
    "log --last many",
    "log --last",
    "log --type",
    "log '",
    'log --type "x',
    "log --bogus",
    "log extra",
    "log --last 1.5",
    "log --last '2",
    "log --last 1 --type",
    # register
    "register",
    "register PingCommand",
    "register A B C",
    "register Nope on_ping",
    "register PingCommand nope",
    "register PingCommand pongs",
    "register pongs on_ping",
    "register 1 2",
    "register 'a' 'b'",
    "register PingCommand on_ping extra",
    "register PingCommand() on_ping",
    "register not_callable on_ping",
    "register PingCommand not_callable",
    "register on_ping PingCommand",
    # execute
    "execute",
    "execute    ",
    "execute 1/0",
    "execute undefined_name",
    "execute PingCommand",
    "execute Strict",
    "execute PingCommand(n='x')",
    "execute PingCommand(",
    "execute PingCommand)",
    "execute pongs",
    "execute None",
    "execute 'text'",
    "execute PingedEvent(n=1)",
    "execute PingCommand(n=1)",
    "execute lambda: 1",
    "execute [1, 2]",
    "execute {",
    "execute import os",
    "execute x = 1",
    "execute int",
    "execute Command",
    "execute Event",
    "execute __import__('no_such_module_xyz')",
    "execute 1 +",
    "execute 'unclosed",
    'execute "unclosed',
    "execute Strict(when='soon')",
    "execute PingCommand(n=1, n=2)",
    "execute {}['missing']",
    "execute [][1]",
    "execute int('x')",
    "execute star",
    "execute on_ping",
    "execute PingCommand.model_validate({})",
    "execute (1,)",
    # publish
    "publish",
    "publish PingedEvent",
    "publish PingedEvent(n='x')",
    "publish PingCommand(n=1)",
    "publish 1/0",
    "publish undefined_name",
    "publish PingedEvent(",
    "publish pongs",
    "publish None",
    "publish Strict",
    "publish Event(",
    "publish 'unclosed",
    "publish PingCommand",
    "publish [PingedEvent(n=1)]",
    "publish {}['x']",
    # chat
    "chat",
    "chat    ",
    "chat --model",
    "chat --conversation",
    "chat --model nope hello",
    "chat --model gpt-5 hi",
    "chat --model openai:gpt-4o-mini hi",
    "chat --model scripted hi",
    "chat --model : hi",
    "chat --model offline",
    "chat --conversation c1",
    "chat --model openai: hi",
    "chat --model replay:/no/such.jsonl hi",
    # model
    "model gpt-5",
    "model nope",
    "model openai:",
    "model :",
    "model openai:gpt-4o-mini",
    "model '",
    "model scripted extra",
    "model replay:/no/such/log.jsonl",
    "model offline offline",
    "model 🙂",
    # tools
    "tools pongs",
    "tools nope",
    "tools star",
    "tools keywords",
    "tools unresolved",
    "tools not_callable",
    "tools get_weather nope",
    "tools '",
    "tools 1",
    "tools get_weather star",
    # form
    "form",
    "form Nope",
    "form PingedEvent",
    "form pongs",
    "form PingCommand extra",
    "form 1",
    "form '",
    "form on_ping",
    "form Command Event",
    # approvals and MCP servers
    "approve",
    "approve nope",
    "approve call_1 with a reason",
    "deny",
    "deny nope because",
    "approve '",
    "mcp",
    "mcp frob",
    "mcp add",
    "mcp add --",
    "mcp add --url",
    "mcp add --url http://127.0.0.1:9/mcp -- x",
    "mcp add --env SECRET -- x",
    "mcp add --timeout soon -- x",
    "mcp add -- no-such-mcp-server-xyz",
    "mcp add -- 'unclosed",
    "mcp remove",
    "mcp remove nope",
    "mcp remove a b",
    "mcp list extra",
    "mcp list -- x",
    # cache and conversations
    "cache frob",
    "cache on a b",
    "cache off now",
    "cache clear all",
    "cache stats '",
    "conversations use",
    "conversations use nope",
    "conversations new a b",
    "conversations frob",
    "conversations '",
    # cell magics
    "%%status\nbody",
    "%%chat --model\nbody",
    "%%chat extra words\nbody",
    "%%\nbody",
    "%%frobnicate\nbody",
    "%%stop\nnow",
    "%%execute PingCommand(n=1)\nbody",
    "%%chat --model nope\nhello",
    "%%chat\n   \n",
]


def _cell(line: str) -> str:
    if line.startswith("%%"):
        return f"%%llmgine {line[2:]}"
    return f"%llmgine {line}"


def _run(tmp_path: Path, cells: list[str]) -> Any:
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


def test_the_table_is_large_and_has_no_repeats() -> None:
    assert len(LINES) >= 200
    assert len(set(LINES)) == len(LINES)


@pytest.mark.timeout(600)
def test_every_malformed_line_is_one_readable_line_and_the_kernel_lives(tmp_path: Path) -> None:
    after = [
        "%llmgine status",  # after failed starts: a working bus, not the last error again
        "%llmgine start --log-file after.jsonl --quiet",
        "1 + 1",
    ]
    cells = SETUP + [_cell(line) for line in LINES] + after
    nb = _run(tmp_path, cells)
    for cell in nb.cells[: len(SETUP)]:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.outputs
    bad: list[str] = []
    for line, cell in zip(LINES, nb.cells[len(SETUP) :], strict=False):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if len(errors) != 1:
            bad.append(f"{line!r}: {len(errors)} errors, outputs {cell.outputs}")
            continue
        (error,) = errors
        shown = error.traceback
        if (
            error.ename != "MagicError"
            or len(shown) != 1
            or not shown[0].startswith("llmgine: ")
            or "\n" in shown[0]
            or "Traceback" in shown[0]
        ):
            bad.append(f"{line!r}: {error.ename} {shown}")
    assert bad == [], "\n".join(bad)
    status, start, alive = nb.cells[-3:]
    assert not [o for o in status.outputs if o.output_type == "error"], status.outputs
    assert "running" in str(status.outputs)
    assert "logs/after.jsonl" in str(start.outputs)
    assert alive.outputs[0].data["text/plain"] == "2"
    assert (tmp_path / "logs" / "after.jsonl").exists()
