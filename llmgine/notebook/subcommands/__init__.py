"""The ``%llmgine`` subcommands: one table mapping each name to its function and help row.

The functions live in one module per concept, each a plain
``run(shell, line, cell)``: :mod:`.lifecycle` (start, stop, connect, status),
:mod:`.messages` (register, handlers, execute, publish), :mod:`.chat` (chat, model),
:mod:`.tools` (tools, approve, deny, mcp), :mod:`.panels` (ui, monitor, form),
:mod:`.logs` (log, metrics, spans, commands, export), :mod:`.costs` (cost, cache)
and :mod:`.conversations`. Only this table knows them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmgine.errors import MagicError
from llmgine.notebook.notes import Note
from llmgine.notebook.subcommands import (
    chat,
    conversations,
    costs,
    lifecycle,
    logs,
    messages,
    panels,
    tools,
)
from llmgine.notebook.subcommands.map import USAGE as MAP_USAGE
from llmgine.notebook.subcommands.map import map_cell

__all__ = ["SUBCOMMANDS", "MagicError", "Note", "Subcommand", "help_text"]

_NO_ARGUMENTS = frozenset(
    ["stop", "status", "handlers", "ui", "monitor", "metrics", "spans", "commands", "cost", "help"]
)

_ID = "ID: an approval id (or its first 8+ characters) or a call id"


@dataclass(frozen=True)
class Subcommand:
    """One ``%llmgine`` subcommand: its usage, an example, and the function that runs it."""

    name: str
    usage: str
    example: str
    summary: str
    run: Callable[[Any, str, str | None], Any]

    @property
    def takes_arguments(self) -> bool:
        """``False``: any word after the subcommand is an error, never silently ignored."""
        return self.name not in _NO_ARGUMENTS


def _help(shell: Any, line: str, cell: str | None) -> Any:
    return Note(help_text())


SUBCOMMANDS: dict[str, Subcommand] = {
    s.name: s
    for s in [
        Subcommand(
            "start",
            "start [--log-dir DIR] [--log-file NAME] [--quiet]",
            "%llmgine start --log-file demo.jsonl --quiet",
            "start the default bus (--quiet: no console lines)",
            lifecycle.start,
        ),
        Subcommand(
            "stop", "stop", "%llmgine stop", "stop the bus; flush and close its log", lifecycle.stop
        ),
        Subcommand(
            "connect",
            "connect URL [--namespace NS]",
            "%llmgine connect redis://127.0.0.1:6379/0",
            "join a shared bus on Redis: workers' handlers, other processes' events",
            lifecycle.connect,
        ),
        Subcommand(
            "status",
            "status",
            "%llmgine status",
            "the bus: log path, handlers, counts",
            lifecycle.status,
        ),
        Subcommand(
            "register",
            "register CLASS FUNC",
            "%llmgine register PingCommand on_ping",
            "register FUNC for a Command or Event class",
            messages.register,
        ),
        Subcommand(
            "handlers",
            "handlers",
            "%llmgine handlers",
            "a table of registered handlers",
            messages.handlers,
        ),
        Subcommand(
            "execute",
            "execute EXPR",
            "r = %llmgine execute PingCommand(n=1)",
            "execute a command; returns its CommandResult",
            messages.execute,
        ),
        Subcommand(
            "publish",
            "publish EXPR",
            "%llmgine publish PingedEvent(n=1)",
            "publish an event and wait for its handlers",
            messages.publish,
        ),
        Subcommand(
            "chat",
            "chat [--model M] [--conversation ID] [--temperature T] [--max-tokens N] "
            "[--tool-choice auto|none|required|TOOL] [--timeout S] PROMPT",
            "%llmgine chat What is the weather in Paris?",
            "stream a reply (or a %%llmgine chat cell: the body is the prompt)",
            chat.chat,
        ),
        Subcommand(
            "map",
            MAP_USAGE,
            "%%llmgine map reviews --into labels",
            "a %%llmgine map cell: its body is a prompt template (`Classify: {review}`) run "
            "over every row of DF on the default engine; the answers as a DataFrame, kept in "
            "NAME (default DF_mapped)",
            map_cell,
        ),
        Subcommand(
            "conversations",
            "conversations [use ID | new [ID]]",
            "%llmgine conversations use default",
            "list the conversations (session_cost_usd: this session's calls only); choose "
            "the one chat and new panels continue",
            conversations.conversations,
        ),
        Subcommand(
            "model",
            "model [NAME]",
            "%llmgine model openai:gpt-4o-mini",
            "show or set the default engine's model",
            chat.model,
        ),
        Subcommand(
            "tools",
            "tools [--approval] [FUNC ...]",
            "%llmgine tools get_weather",
            "list tools, or register functions as tools (--approval: each call waits for a yes)",
            tools.tools,
        ),
        Subcommand(
            "approve",
            "approve [ID]",
            "%llmgine approve 3f2a9c1e",
            f"run a tool call that waits for approval; {_ID}",
            tools.approve,
        ),
        Subcommand(
            "deny",
            "deny [ID [REASON]]",
            "%llmgine deny 3f2a9c1e not that file",
            f"refuse a waiting tool call; the model is told why; {_ID}",
            tools.deny,
        ),
        Subcommand(
            "mcp",
            "mcp add -- CMD ARGS... | mcp add --url URL | mcp list | mcp remove NAME",
            "%llmgine mcp add -- mcp-server-time",
            "MCP tool servers (add: --name N, --approval, --env K=V, --timeout S)",
            tools.mcp,
        ),
        Subcommand("ui", "ui", "%llmgine ui", "a chat panel for the default engine", panels.ui),
        Subcommand(
            "monitor", "monitor", "%llmgine monitor", "a live table of bus events", panels.monitor
        ),
        Subcommand(
            "form",
            "form CLASS",
            "%llmgine form PingCommand",
            "a form that builds and executes a command",
            panels.form,
        ),
        Subcommand(
            "log",
            "log [--last N] [--type T]",
            "%llmgine log --last 5",
            "the log as a DataFrame",
            logs.log,
        ),
        Subcommand(
            "metrics",
            "metrics",
            "%llmgine metrics",
            "metrics as a DataFrame",
            logs.frame("metrics"),
        ),
        Subcommand(
            "spans",
            "spans",
            "%llmgine spans",
            "trace spans as a DataFrame, shown as waterfalls",
            logs.spans,
        ),
        Subcommand(
            "commands",
            "commands",
            "%llmgine commands",
            "commands as a DataFrame",
            logs.frame("commands"),
        ),
        Subcommand(
            "cost",
            "cost",
            "r = %llmgine cost",
            "this session's spend by model and by conversation (r.by_model: a DataFrame)",
            costs.cost,
        ),
        Subcommand(
            "cache",
            "cache on [PATH|redis] | off | clear | stats",
            "%llmgine cache on",
            "answer a prompt asked before from the call cache (no call, no cost)",
            costs.cache,
        ),
        Subcommand(
            "export",
            "export --otlp URL [--project NAME]",
            "%llmgine export --otlp http://127.0.0.1:6006",
            "send the log's spans to an OTLP endpoint (Phoenix, Jaeger, ...)",
            logs.export,
        ),
        Subcommand("help", "help", "%llmgine help", "this list", _help),
    ]
}


def help_text() -> str:
    """Every subcommand with its usage and an example, as Markdown."""
    rows = [f"| `{s.usage}` | {s.summary} | `{s.example}` |" for s in SUBCOMMANDS.values()]
    return "\n".join(["| subcommand | what it does | example |", "|---|---|---|", *rows])
