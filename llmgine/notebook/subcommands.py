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


def _split(line: str, name: str) -> list[str]:
    """The words of ``line`` as a shell splits them; a bad quote is a readable error."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise MagicError(
            f"%llmgine {name}: {str(exc).lower()} in {line.strip()!r}; close the quote"
        ) from None


_NO_ARGUMENTS = frozenset(
    ["stop", "status", "handlers", "ui", "monitor", "metrics", "spans", "commands", "help"]
)


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


def _instantiate(message_type: type, what: str) -> Any:
    """``PingCommand`` given alone: an instance with its defaults, or say which fields it needs."""
    try:
        return message_type()
    except ValidationError as exc:
        needed = ", ".join(
            ".".join(str(p) for p in e["loc"]) for e in exc.errors() if e["type"] == "missing"
        )
        name = message_type.__name__
        if needed:
            raise MagicError(
                f"{name} needs {needed}: `%llmgine {what} {name}({needed.split(', ')[0]}=...)`"
            ) from None
        raise MagicError(f"could not make a {name}: {exc.errors()[0]['msg']}") from None


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
    args = parser.parse_args(_split(line, "start"))
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


def _stop(shell: Any, line: str, cell: str | None) -> Any:
    runtime = get_runtime()
    if runtime.bus is None or not runtime.bus.is_running:
        return Note("llmgine bus is not running")
    if runtime.engine is not None and len(runtime.engine.mcp_servers):
        run_sync(runtime.engine.close())  # MCP server processes end with the bus
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
    # Only report: starting a stopped bus here would reopen (and append to) its closed log.
    bus = get_runtime().bus
    if bus is None:
        return Note(
            "llmgine bus not started yet; `%llmgine start` starts it (so does the first "
            "subcommand that needs it)"
        )
    return bus


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
        command = _instantiate(command, "execute")
    if not isinstance(command, Command):
        raise MagicError(f"{line.strip()} is a {type(command).__name__}, not a Command")
    bus = get_runtime().get_bus()
    result = run_sync(bus.execute(command))
    run_sync(bus.wait_for_events())
    return result


def _publish(shell: Any, line: str, cell: str | None) -> Any:
    event = _evaluate(shell, line, "publish")
    if isinstance(event, type) and issubclass(event, Event):
        event = _instantiate(event, "publish")
    if not isinstance(event, Event):
        raise MagicError(f"{line.strip()} is a {type(event).__name__}, not an Event")
    bus = get_runtime().get_bus()
    run_sync(bus.publish(event))
    run_sync(bus.wait_for_events())
    return Note(f"published `{type(event).__name__}`")


# --------------------------------------------------------------- the model


_CHAT_FLAGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--model": ("model", str),
    "--conversation": ("conversation_id", str),
    "--temperature": ("temperature", float),
    "--max-tokens": ("max_tokens", int),
    "--tool-choice": ("tool_choice", str),
    "--timeout": ("timeout", float),
}


def _chat_options(line: str) -> tuple[dict[str, Any], str]:
    """Leading options (``--model M``, ``--temperature T``, ...), then the prompt, verbatim."""
    options: dict[str, Any] = {}
    rest = line.lstrip()
    while True:
        flag, _, after = rest.partition(" ")
        if flag not in _CHAT_FLAGS:
            if flag.startswith("--") and len(flag) > 2 and flag[2:3].isalpha():
                known = ", ".join(_CHAT_FLAGS)
                raise MagicError(f"unknown chat option {flag}; the options are {known}")
            return options, rest
        value, _, rest = after.lstrip().partition(" ")
        if not value:
            raise MagicError(f"{flag} needs a value")
        field, convert = _CHAT_FLAGS[flag]
        try:
            options[field] = convert(value)
        except ValueError:
            kind = "a whole number" if convert is int else "a number"
            raise MagicError(f"{flag} needs {kind}, not {value!r}") from None
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
    kernel = getattr(shell, "kernel", None)
    # Stream into one output updated in place only for a person at an interactive frontend
    # (it sends allow_stdin); runs by nbclient/nbval get the reply once, as they compare it.
    live = bool(getattr(kernel, "_allow_stdin", False))
    area: list[Any] = []  # the live output, made at the first piece of text

    async def stream() -> str:
        text = ""
        async for piece in engine.stream(prompt, **options):
            text += piece
            if not live:
                continue
            if area:
                area[0].update(Markdown(text))
            else:
                area.append(display(Markdown(text), display_id=True))
        await engine.bus.wait_for_events()
        return text

    from llmgine.notebook.tool_subcommands import approvals_asked_in_the_cell

    try:
        with approvals_asked_in_the_cell(engine):  # the busy cell asks on its input line
            text = run_sync(stream())
    except CommandFailedError as exc:
        raise MagicError(str(exc)) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise MagicError(problems) from None
    if area:
        area[0].update(Markdown(text))  # the live output is the reply: one output, no blank
    else:
        display(Markdown(text) if kernel is not None else Note(text))
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
    names = line.split()
    approval = "--approval" in names  # each call of these tools waits for `%llmgine approve`
    for name in (n for n in names if n != "--approval"):
        if name.startswith("-"):
            raise MagicError(f"%llmgine tools: unknown option {name}; the one option is --approval")
        function = _lookup(shell, name)
        if not callable(function):
            raise MagicError(f"{name} is not a function")
        try:
            engine.register_tool(function, requires_approval=approval)
        except (TypeError, ValueError, NameError) as exc:
            raise MagicError(f"{name} cannot be a tool: {exc}") from None
    names = [
        f"`{t.name}`" + (" (needs approval)" if t.requires_approval else "") for t in engine.tools
    ]
    return Note("tools: " + (", ".join(names) if names else "none yet (`%llmgine tools FUNC`)"))


def _approve(shell: Any, line: str, cell: str | None) -> Any:
    from llmgine.notebook.tool_subcommands import approve

    return approve(shell, line, cell)


def _deny(shell: Any, line: str, cell: str | None) -> Any:
    from llmgine.notebook.tool_subcommands import deny

    return deny(shell, line, cell)


def _mcp(shell: Any, line: str, cell: str | None) -> Any:
    from llmgine.notebook.tool_subcommands import mcp

    return mcp(shell, line, cell)


# ----------------------------------------------------------------- widgets


def _ui(shell: Any, line: str, cell: str | None) -> Any:
    from llmgine.notebook.widgets import ChatWidget

    runtime = get_runtime()
    panel = ChatWidget(runtime.get_engine())
    runtime.follow(panel)  # a later `%llmgine start` moves it to the new bus and log
    return panel


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
    args = parser.parse_args(_split(line, "log"))
    frame = _events(line)
    if args.type is not None:
        frame = frame[frame["type"] == args.type]
    return frame.tail(args.last) if args.last is not None else frame


def _frame(name: str) -> Callable[[Any, str, str | None], Any]:
    def show(shell: Any, line: str, cell: str | None) -> Any:
        return getattr(_events(line).llmgine, name)()

    show.__name__ = f"_{name}"
    return show


def _spans(shell: Any, line: str, cell: str | None) -> Any:
    from llmgine.analysis import SpansFrame

    return SpansFrame(_events(line).llmgine.spans())  # displays as waterfalls


def _export(shell: Any, line: str, cell: str | None) -> Any:
    from llmgine.observability.otlp import OTLPExporter, redact_url

    parser = _parser("export")
    parser.add_argument("--otlp", required=True)
    parser.add_argument("--project", default=None)
    args = parser.parse_args(shlex.split(line))
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
    if exporter.stats.failed:
        raise MagicError(
            f"{redact_url(exporter.endpoint)} did not accept {exporter.stats.failed} span(s)"
        )
    return Note(f"exported {sent} spans to {redact_url(exporter.endpoint)}")


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
            "chat [--model M] [--conversation ID] [--temperature T] [--max-tokens N] "
            "[--tool-choice auto|none|required|TOOL] [--timeout S] PROMPT",
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
            "tools [--approval] [FUNC ...]",
            "%llmgine tools get_weather",
            "list tools, or register functions as tools (--approval: each call waits for a yes)",
            _tools,
        ),
        Subcommand(
            "approve",
            "approve [CALL_ID]",
            "%llmgine approve call_1",
            "run a tool call that waits for approval",
            _approve,
        ),
        Subcommand(
            "deny",
            "deny [CALL_ID [REASON]]",
            "%llmgine deny call_1 not that file",
            "refuse a waiting tool call; the model is told why",
            _deny,
        ),
        Subcommand(
            "mcp",
            "mcp add -- CMD ARGS... | mcp add --url URL | mcp list | mcp remove NAME",
            "%llmgine mcp add -- mcp-server-time",
            "MCP tool servers (add: --name N, --approval, --env K=V, --timeout S)",
            _mcp,
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
            "spans",
            "spans",
            "%llmgine spans",
            "trace spans as a DataFrame, shown as waterfalls",
            _spans,
        ),
        Subcommand(
            "commands",
            "commands",
            "%llmgine commands",
            "commands as a DataFrame",
            _frame("commands"),
        ),
        Subcommand(
            "export",
            "export --otlp URL [--project NAME]",
            "%llmgine export --otlp http://127.0.0.1:6006",
            "send the log's spans to an OTLP endpoint (Phoenix, Jaeger, ...)",
            _export,
        ),
        Subcommand("help", "help", "%llmgine help", "this list", _help),
    ]
}


def help_text() -> str:
    """Every subcommand with its usage and an example, as Markdown."""
    rows = [f"| `{s.usage}` | {s.summary} | `{s.example}` |" for s in SUBCOMMANDS.values()]
    return "\n".join(["| subcommand | what it does | example |", "|---|---|---|", *rows])
