"""``%llmgine log``, ``metrics``, ``spans``, ``commands`` and ``export``: the bus's log."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from llmgine.errors import MagicError
from llmgine.notebook.arguments import parser, split
from llmgine.notebook.notes import Note
from llmgine.notebook.runtime import get_runtime
from llmgine.notebook.sync import run_sync

__all__ = ["export", "frame", "log", "spans"]


def _events(line: str) -> Any:
    from llmgine.analysis import load_events

    bus = get_runtime().get_bus()
    if bus.log_path is None:
        raise MagicError("the bus writes no log (started with --log-dir none)")
    run_sync(bus.wait_for_events())
    return load_events(bus)


def log(shell: Any, line: str, cell: str | None) -> Any:
    """The log as a DataFrame: the last N lines, of one type."""
    options_parser = parser("log")
    options_parser.add_argument("--last", type=int, default=None)
    options_parser.add_argument("--type", default=None)
    args = options_parser.parse_args(split(line, "log"))
    if args.last is not None and args.last < 0:
        raise MagicError(f"%llmgine log: --last takes a count of 0 or more, not {args.last}")
    events = _events(line)
    if args.type is not None:
        chosen = events[events["type"] == args.type]
        if chosen.empty:
            _check_type(args.type, set(events["type"].dropna()))
        events = chosen
    return events.tail(args.last) if args.last is not None else events


def _check_type(name: str, in_log: set[str]) -> None:
    """Refuse a ``--type`` that names no message class (a typo), with the closest names.

    A message class that has no line in the log yet is fine: its frame is empty.
    """
    import difflib

    import llmgine.evals
    import llmgine.llm  # noqa: F401  (their message classes count, even unused so far)
    from llmgine.messages.base import Message

    known, classes = set(in_log), [Message]
    while classes:
        cls = classes.pop()
        known.add(cls.__name__)
        classes.extend(cls.__subclasses__())
    if name in known:
        return
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    shown = ", ".join(sorted(in_log)[:8]) or "none yet"
    raise MagicError(
        f"%llmgine log --type {name}: no message type of that name{hint} "
        f"(types in the log: {shown})"
    )


def frame(name: str) -> Callable[[Any, str, str | None], Any]:
    """The subcommand showing the log's frame ``name`` (``metrics``, ``commands``)."""

    def show(shell: Any, line: str, cell: str | None) -> Any:
        return getattr(_events(line).llmgine, name)()

    show.__name__ = name
    return show


def spans(shell: Any, line: str, cell: str | None) -> Any:
    """The log's trace spans as a DataFrame that displays as waterfalls."""
    from llmgine.analysis import SpansFrame

    return SpansFrame(_events(line).llmgine.spans())  # displays as waterfalls


def export(shell: Any, line: str, cell: str | None) -> Any:
    """Send the log's spans to an OTLP endpoint; say how many, and any lines skipped."""
    from llmgine.observability.otlp import OTLPExporter, redact_url

    options_parser = parser("export")
    options_parser.add_argument("--otlp", required=True)
    options_parser.add_argument("--project", default=None)
    args = options_parser.parse_args(shlex.split(line))
    bus = get_runtime().get_bus()
    if bus.log_path is None:
        raise MagicError("the bus writes no log (started with --log-dir none)")
    run_sync(bus.wait_for_events())
    bus.flush()
    exporter = OTLPExporter(args.otlp, project_name=args.project)
    try:
        with bus.log_path.open("rb") as lines:
            sent = exporter.export_lines(lines)
    finally:
        exporter.close()
    stats = exporter.stats
    if stats.failed:
        raise MagicError(f"{redact_url(exporter.endpoint)} did not accept {stats.failed} span(s)")
    note = f"exported {sent} spans to {redact_url(exporter.endpoint)}"
    if stats.skipped or stats.errors:
        note += f"; {stats.skipped + stats.errors} line(s) could not be read and were skipped"
    return Note(note)
