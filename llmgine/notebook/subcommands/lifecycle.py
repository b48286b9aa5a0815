"""``%llmgine start``, ``stop``, ``connect`` and ``status``: the default bus's life."""

from __future__ import annotations

import shlex
from typing import Any

from llmgine.errors import MagicError
from llmgine.notebook.arguments import parser, split
from llmgine.notebook.notes import Note
from llmgine.notebook.runtime import get_runtime
from llmgine.notebook.sync import run_sync

__all__ = ["connect", "start", "status", "stop"]


def start(shell: Any, line: str, cell: str | None) -> Any:
    """Start the default bus, or a fresh one when options are given."""
    options_parser = parser("start")
    options_parser.add_argument("--log-dir", default=None)
    options_parser.add_argument("--log-file", default=None)
    options_parser.add_argument("--quiet", action="store_true")
    args = options_parser.parse_args(split(line, "start"))
    for flag, value in (("--log-dir", args.log_dir), ("--log-file", args.log_file)):
        if value is not None and not value.strip():
            raise MagicError(f"%llmgine start: {flag} needs a name; got an empty one")
    runtime = get_runtime()
    options: dict[str, Any] = {}
    if args.log_dir is not None:
        options["log_dir"] = None if args.log_dir.lower() == "none" else args.log_dir
    if args.log_file is not None:
        options["log_filename"] = args.log_file
    if args.quiet:
        options.update(enable_console_metrics=False, enable_console_traces=False)
    fresh = options or runtime.bus is None
    bus = runtime.replace_bus(**options) if fresh else runtime.get_bus()
    log = f"log: `{bus.log_path}`" if bus.log_path else "no log file"
    return Note(f"llmgine bus running; {log}")


def stop(shell: Any, line: str, cell: str | None) -> Any:
    """Stop the bus (and the engine's MCP servers); its log is flushed and closed."""
    runtime = get_runtime()
    if runtime.bus is None or not runtime.bus.is_running:
        return Note("llmgine bus is not running")
    if runtime.engine is not None and len(runtime.engine.mcp_servers):
        run_sync(runtime.engine.close())  # MCP server processes end with the bus
    run_sync(runtime.bus.stop())
    return Note("llmgine bus stopped; its log is flushed and closed")


def connect(shell: Any, line: str, cell: str | None) -> Any:
    """Join a shared bus on Redis (leaving the one joined before, if any)."""
    options_parser = parser("connect")
    options_parser.add_argument("url")
    options_parser.add_argument("--namespace", default="llmgine")
    args = options_parser.parse_args(shlex.split(line))
    from llmgine.bus.remote.keys import redact

    bus = get_runtime().get_bus()
    if bus.remote is not None:
        run_sync(bus.disconnect())
    try:
        run_sync(bus.connect(args.url, args.namespace))
    except ConnectionError as exc:
        raise MagicError(str(exc)) from None
    return Note(f"llmgine bus connected to `{redact(args.url)}` (namespace `{args.namespace}`)")


def status(shell: Any, line: str, cell: str | None) -> Any:
    """The bus itself (it displays its state), or a note that none is started."""
    # Only report: starting a stopped bus here would reopen (and append to) its closed log.
    bus = get_runtime().bus
    if bus is None:
        return Note(
            "llmgine bus not started yet; `%llmgine start` starts it (so does the first "
            "subcommand that needs it)"
        )
    return bus
