"""``%llmgine start``, ``stop``, ``connect`` and ``status``: the default bus's life."""

from __future__ import annotations

import logging
from typing import Any

from llmgine._urls import redact_url
from llmgine.bus.bus import MessageBus
from llmgine.errors import LLMgineError, MagicError
from llmgine.notebook.arguments import parser, split
from llmgine.notebook.notes import Note
from llmgine.notebook.probe import reach_redis
from llmgine.notebook.runtime import get_runtime
from llmgine.notebook.sync import run_sync

__all__ = ["connect", "start", "status", "stop", "where"]

logger = logging.getLogger(__name__)


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
    """Join a shared bus on Redis, leaving the one joined before once the new one is joined.

    While joined, the new URL is reached first: a URL that does not answer (a typo)
    leaves the working link untouched, its commands still running. Should joining
    fail after that, the old shared bus is joined again.
    """
    options_parser = parser("connect")
    options_parser.add_argument("url")
    options_parser.add_argument("--namespace", default="llmgine")
    args = options_parser.parse_args(split(line, "connect"))
    bus = get_runtime().get_bus()
    old = bus.remote
    if old is not None:
        try:
            run_sync(reach_redis(args.url))
        except Exception as exc:
            kept = f"`{redact_url(old.url)}` (namespace `{old.keys.namespace}`)"
            raise MagicError(f"{_message(exc)} The bus is still connected to {kept}.") from None
        run_sync(bus.disconnect())
    try:
        run_sync(bus.connect(args.url, args.namespace))
    except Exception as exc:
        if old is None:
            raise
        kept = _rejoin(bus, old.url, old.keys.namespace)
        raise MagicError(f"{_message(exc)} {kept}") from None
    return Note(f"llmgine bus connected to `{redact_url(args.url)}` (namespace `{args.namespace}`)")


def _message(exc: Exception) -> str:
    text = str(exc) if isinstance(exc, LLMgineError) else f"{type(exc).__name__}: {exc}"
    return text if text.endswith((".", "?", ")")) else text + "."


def _rejoin(bus: MessageBus, url: str, namespace: str) -> str:
    """Join the shared bus at ``url`` again after a failed connect; what to tell the user."""
    where = f"`{redact_url(url)}` (namespace `{namespace}`)"
    try:
        run_sync(bus.connect(url, namespace))
    except Exception as exc:
        logger.warning("the shared bus at %s could not be joined again", where, exc_info=True)
        return f"The bus left {where} and could not join it again ({type(exc).__name__})."
    return f"The bus is still connected to {where}."


def where(bus: MessageBus) -> str:
    """Where ``bus`` is connected (its password hidden), or that it is local only."""
    link = bus.remote
    if link is None:
        return "not connected to a shared bus (`%llmgine connect URL` joins one)"
    return f"connected to `{redact_url(link.url)}` (namespace `{link.keys.namespace}`)"


def status(shell: Any, line: str, cell: str | None) -> Any:
    """The bus itself (it displays its state), or a note that none is started.

    A line above it says whether the bus is connected to a shared bus, and where.
    """
    # Only report: starting a stopped bus here would reopen (and append to) its closed log.
    bus = get_runtime().bus
    if bus is None:
        return Note(
            "llmgine bus not started yet; `%llmgine start` starts it (so does the first "
            "subcommand that needs it)"
        )
    from IPython.display import display

    display(Note(f"llmgine bus {where(bus)}"))
    return bus
