"""The ``%llmgine`` subcommands: one small function each, found through one table."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from llmgine.errors import CommandFailedError, LLMgineError
from llmgine.messages.commands import Command
from llmgine.messages.events import Event
from llmgine.notebook.runtime import get_runtime
from llmgine.notebook.sync import run_sync

__all__ = ["SUBCOMMANDS", "MagicError", "Note", "Subcommand", "help_text"]


class MagicError(LLMgineError):
    """A mistake in a ``%llmgine`` line: shown as one readable line, and the cell fails."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever it quotes

    def _render_traceback_(self) -> list[str]:
        return [f"llmgine: {self}"]


class Note:
    """A short message a magic displays (Markdown in a notebook, text in a terminal)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise MagicError(f"{self.prog}: {message}")


def _parser(name: str) -> _Parser:
    return _Parser(prog=f"%llmgine {name}", add_help=False)


@dataclass(frozen=True)
class Subcommand:
    """One ``%llmgine`` subcommand: its usage, an example, and the function that runs it."""

    name: str
    usage: str
    example: str
    summary: str
    run: Callable[[Any, str, str | None], Any]


def _lookup(shell: Any, name: str) -> Any:
    if name not in shell.user_ns:
        raise MagicError(f"name {name!r} is not defined in this notebook")
    return shell.user_ns[name]


def _evaluate(shell: Any, expression: str, what: str) -> Any:
    if not expression.strip():
        raise MagicError(f"give an expression to {what}, e.g. `%llmgine {what} MyCommand(x=1)`")
    try:
        return eval(expression, shell.user_ns)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        raise MagicError(f"could not evaluate {expression!r}: {problems}") from None
    except Exception as exc:
        raise MagicError(
            f"could not evaluate {expression!r}: {type(exc).__name__}: {exc}"
        ) from None


def _message_class(shell: Any, name: str, base: type) -> type:
    value = _lookup(shell, name)
    if not (isinstance(value, type) and issubclass(value, base)):
        raise MagicError(f"{name} is not a {base.__name__} class")
    return value


# ------------------------------------------------------------------ the bus


def _start(shell: Any, line: str, cell: str | None) -> Any:
    parser = _parser("start")
    parser.add_argument("--log-dir", default=None)
    parser.add_argument("--log-file", default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(shlex.split(line))
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


def _stop(shell: Any, line: str, cell: str | None) -> Any:
    runtime = get_runtime()
    if runtime.bus is None or not runtime.bus.is_running:
        return Note("llmgine bus is not running")
    run_sync(runtime.bus.stop())
    return Note("llmgine bus stopped; its log is flushed and closed")


def _connect(shell: Any, line: str, cell: str | None) -> Any:
    parser = _parser("connect")
    parser.add_argument("url")
    parser.add_argument("--namespace", default="llmgine")
    args = parser.parse_args(shlex.split(line))
    from llmgine.bus.remote.keys import redact

    bus = get_runtime().get_bus()
    if bus.remote is not None:
        run_sync(bus.disconnect())
    try:
        run_sync(bus.connect(args.url, args.namespace))
    except ConnectionError as exc:
        raise MagicError(str(exc)) from None
    return Note(f"llmgine bus connected to `{redact(args.url)}` (namespace `{args.namespace}`)")


def _status(shell: Any, line: str, cell: str | None) -> Any:
    return get_runtime().get_bus()


def _register(shell: Any, line: str, cell: str | None) -> Any:
    parts = line.split()
    if len(parts) != 2:
        raise MagicError("usage: %llmgine register CLASS FUNC")
    class_name, function_name = parts
    message_type = _lookup(shell, class_name)
    handler = _lookup(shell, function_name)
    if not callable(handler):
        raise MagicError(f"{function_name} is not a function")
    bus = get_runtime().get_bus()
    if isinstance(message_type, type) and issubclass(message_type, Command):
        bus.register_command_handler(message_type, handler)
    elif isinstance(message_type, type) and issubclass(message_type, Event):
        bus.register_event_handler(message_type, handler)
    else:
        raise MagicError(f"{class_name} is neither a Command nor an Event class")
    return Note(f"registered `{function_name}` for `{class_name}`")


def _handlers(shell: Any, line: str, cell: str | None) -> Any:
    import pandas as pd

    rows = [
        {
            "kind": r.kind,
            "message": r.message_type.__name__,
            "handler": r.handler,
            "session": r.session or "",
        }
        for r in get_runtime().get_bus().registrations()
    ]
    return pd.DataFrame(rows, columns=["kind", "message", "handler", "session"])


def _execute(shell: Any, line: str, cell: str | None) -> Any:
    command = _evaluate(shell, line, "execute")
    if isinstance(command, type) and issubclass(command, Command):
        command = command()
    if not isinstance(command, Command):
        raise MagicError(f"{line.strip()} is a {type(command).__name__}, not a Command")
    bus = get_runtime().get_bus()
    result = run_sync(bus.execute(command))
    run_sync(bus.wait_for_events())
    return result


def _publish(shell: Any, line: str, cell: str | None) -> Any:
    event = _evaluate(shell, line, "publish")
    if isinstance(event, type) and issubclass(event, Event):
        event = event()
    if not isinstance(event, Event):
        raise MagicError(f"{line.strip()} is a {type(event).__name__}, not an Event")
    bus = get_runtime().get_bus()
    run_sync(bus.publish(event))
    run_sync(bus.wait_for_events())
    return Note(f"published `{type(event).__name__}`")


# --------------------------------------------------------------- the model


def _chat_options(line: str) -> tuple[dict[str, str], str]:
    """Leading ``--model M`` / ``--conversation ID`` options, then the prompt, verbatim."""
    options: dict[str, str] = {}
    rest = line.lstrip()
    while True:
        flag, _, after = rest.partition(" ")
        if flag not in ("--model", "--conversation"):
            return options, rest
        value, _, rest = after.lstrip().partition(" ")
        if not value:
            raise MagicError(f"{flag} needs a value")
        options["model" if flag == "--model" else "conversation_id"] = value
        rest = rest.lstrip()


def _chat(shell: Any, line: str, cell: str | None) -> Any:
    from IPython.display import Markdown, display

    options, prompt = _chat_options(line)
    if cell is not None:
        if prompt.strip():
            raise MagicError(f"unexpected text after the options: {prompt.strip()!r}")
        prompt = cell
    if not prompt.strip():
        raise MagicError("give a prompt: `%llmgine chat Hello!` or a `%%llmgine chat` cell")
    engine = get_runtime().get_engine()
    live = getattr(shell, "kernel", None) is not None  # a notebook updates one output in place

    async def stream() -> str:
        handle = display(Markdown(""), display_id=True) if live else None
        text = ""
        try:
            async for piece in engine.stream(prompt, **options):
                text += piece
                if handle is not None:
                    handle.update(Markdown(text))
        finally:
            if handle is not None:
                handle.update(Markdown(""))
        await engine.bus.wait_for_events()
        return text

    try:
        text = run_sync(stream())
    except CommandFailedError as exc:
        raise MagicError(str(exc)) from None
    # In a notebook the live area is blanked and the reply shown once more as a plain output,
    # so the saved notebook holds it even for readers that ignore display updates (nbval).
    display(Markdown(text) if live else Note(text))
    return None


def _model(shell: Any, line: str, cell: str | None) -> Any:
    engine = get_runtime().get_engine()
    name = line.strip()
    if name:
        engine.set_model(name)
        return Note(f"model set to `{engine.model}`")
    return Note(f"model: `{engine.model}`")


def _tools(shell: Any, line: str, cell: str | None) -> Any:
    engine = get_runtime().get_engine()
    for name in line.split():
        function = _lookup(shell, name)
        if not callable(function):
            raise MagicError(f"{name} is not a function")
        engine.register_tool(function)
    names = [f"`{t.name}`" for t in engine.tools]
    return Note("tools: " + (", ".join(names) if names else "none yet (`%llmgine tools FUNC`)"))


# ----------------------------------------------------------------- widgets


def _ui(shell: Any, line: str, cell: str | None) -> Any:
    from llmgine.notebook.widgets import ChatWidget

    return ChatWidget(get_runtime().get_engine())


def _monitor(shell: Any, line: str, cell: str | None) -> Any:
    from llmgine.notebook.widgets import BusMonitor

    return BusMonitor(get_runtime().get_bus())


def _form(shell: Any, line: str, cell: str | None) -> Any:
    from llmgine.notebook.widgets import CommandForm

    name = line.strip()
    if not name:
        raise MagicError("usage: %llmgine form CLASS")
    return CommandForm(_message_class(shell, name, Command), get_runtime().get_bus())


# ---------------------------------------------------------------- the log


def _events(line: str) -> Any:
    from llmgine.analysis import load_events

    bus = get_runtime().get_bus()
    if bus.log_path is None:
        raise MagicError("the bus writes no log (started with --log-dir none)")
    run_sync(bus.wait_for_events())
    return load_events(bus)


def _log(shell: Any, line: str, cell: str | None) -> Any:
    parser = _parser("log")
    parser.add_argument("--last", type=int, default=None)
    parser.add_argument("--type", default=None)
    args = parser.parse_args(shlex.split(line))
    frame = _events(line)
    if args.type is not None:
        frame = frame[frame["type"] == args.type]
    return frame.tail(args.last) if args.last is not None else frame


def _frame(name: str) -> Callable[[Any, str, str | None], Any]:
    def show(shell: Any, line: str, cell: str | None) -> Any:
        return getattr(_events(line).llmgine, name)()

    show.__name__ = f"_{name}"
    return show


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
            _start,
        ),
        Subcommand("stop", "stop", "%llmgine stop", "stop the bus; flush and close its log", _stop),
        Subcommand(
            "connect",
            "connect URL [--namespace NS]",
            "%llmgine connect redis://127.0.0.1:6379/0",
            "join a shared bus on Redis: workers' handlers, other processes' events",
            _connect,
        ),
        Subcommand(
            "status", "status", "%llmgine status", "the bus: log path, handlers, counts", _status
        ),
        Subcommand(
            "register",
            "register CLASS FUNC",
            "%llmgine register PingCommand on_ping",
            "register FUNC for a Command or Event class",
            _register,
        ),
        Subcommand(
            "handlers", "handlers", "%llmgine handlers", "a table of registered handlers", _handlers
        ),
        Subcommand(
            "execute",
            "execute EXPR",
            "r = %llmgine execute PingCommand(n=1)",
            "execute a command; returns its CommandResult",
            _execute,
        ),
        Subcommand(
            "publish",
            "publish EXPR",
            "%llmgine publish PingedEvent(n=1)",
            "publish an event and wait for its handlers",
            _publish,
        ),
        Subcommand(
            "chat",
            "chat [--model M] [--conversation ID] PROMPT",
            "%llmgine chat What is the weather in Paris?",
            "stream a reply (or a %%llmgine chat cell: the body is the prompt)",
            _chat,
        ),
        Subcommand(
            "model",
            "model [NAME]",
            "%llmgine model openai:gpt-4o-mini",
            "show or set the default engine's model",
            _model,
        ),
        Subcommand(
            "tools",
            "tools [FUNC ...]",
            "%llmgine tools get_weather",
            "list tools, or register functions as tools",
            _tools,
        ),
        Subcommand("ui", "ui", "%llmgine ui", "a chat panel for the default engine", _ui),
        Subcommand(
            "monitor", "monitor", "%llmgine monitor", "a live table of bus events", _monitor
        ),
        Subcommand(
            "form",
            "form CLASS",
            "%llmgine form PingCommand",
            "a form that builds and executes a command",
            _form,
        ),
        Subcommand(
            "log",
            "log [--last N] [--type T]",
            "%llmgine log --last 5",
            "the log as a DataFrame",
            _log,
        ),
        Subcommand(
            "metrics", "metrics", "%llmgine metrics", "metrics as a DataFrame", _frame("metrics")
        ),
        Subcommand(
            "spans", "spans", "%llmgine spans", "trace spans as a DataFrame", _frame("spans")
        ),
        Subcommand(
            "commands",
            "commands",
            "%llmgine commands",
            "commands as a DataFrame",
            _frame("commands"),
        ),
        Subcommand("help", "help", "%llmgine help", "this list", _help),
    ]
}


def help_text() -> str:
    """Every subcommand with its usage and an example, as Markdown."""
    rows = [f"| `{s.usage}` | {s.summary} | `{s.example}` |" for s in SUBCOMMANDS.values()]
    return "\n".join(["| subcommand | what it does | example |", "|---|---|---|", *rows])
