"""%llmgine through a real InteractiveShell: every subcommand and every error path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from llmgine import CommandResult, MessageBus
from llmgine.notebook import LLMgineMagics, MagicError, get_bus, get_engine
from llmgine.notebook.subcommands import SUBCOMMANDS


def magic(shell: InteractiveShell, line: str, cell: str | None = None) -> object:
    if cell is None:
        return shell.run_line_magic("llmgine", line)
    return shell.run_cell_magic("llmgine", line, cell)


def test_help_lists_every_subcommand_with_an_example(shell: InteractiveShell) -> None:
    text = repr(magic(shell, "help"))
    for sub in SUBCOMMANDS.values():
        assert f"`{sub.usage}`" in text
        assert f"`{sub.example}`" in text
    doc = LLMgineMagics.llmgine.__doc__ or ""
    assert "execute EXPR" in doc
    assert "%%llmgine chat" in doc


def test_start_status_stop(shell: InteractiveShell, tmp_path: Path) -> None:
    note = magic(shell, "start --log-file run.jsonl --quiet")
    assert repr(note) == "llmgine bus running; log: `logs/run.jsonl`"
    bus = magic(shell, "status")
    assert isinstance(bus, MessageBus)
    assert bus.is_running
    assert bus is get_bus()
    assert "running" in bus._repr_html_()
    magic(shell, "register PingCommand on_ping")
    magic(shell, "execute PingCommand(n=2)")
    assert repr(magic(shell, "stop")) == "llmgine bus stopped; its log is flushed and closed"
    assert not bus.is_running
    assert repr(magic(shell, "stop")) == "llmgine bus is not running"
    # One execute: its span start, the command, its result, its span end.
    assert (tmp_path / "logs" / "run.jsonl").read_text().count("\n") == 4
    assert magic(shell, "status") is bus  # status starts the default bus again
    assert bus.is_running


def test_start_with_no_log(shell: InteractiveShell, tmp_path: Path) -> None:
    assert repr(magic(shell, "start --log-dir none --quiet")) == "llmgine bus running; no log file"
    assert get_bus().log_path is None


def test_register_execute_and_publish(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    magic(shell, "register PingCommand on_ping")
    magic(shell, "register PingedEvent on_pinged")
    result = magic(shell, "execute PingCommand(n=4)")
    assert isinstance(result, CommandResult)
    assert result.result == 40
    assert magic(shell, "execute PingCommand").result == 10  # a class is instantiated
    shell.run_cell("r = %llmgine execute PingCommand(n=5)")
    assert shell.user_ns["r"].result == 50
    assert repr(magic(shell, "publish PingedEvent(n=3)")) == "published `PingedEvent`"
    assert shell.user_ns["pongs"] == [3]


def test_handlers_table(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    magic(shell, "register PingCommand on_ping")
    table = magic(shell, "handlers")
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["kind", "message", "handler", "session"]
    assert "PingCommand" in set(table["message"])


def test_chat_line_and_cell_keep_braces_and_dollars(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    shell.user_ns["x"] = "SHOULD NOT APPEAR"
    with capture_output() as captured:
        magic(shell, "chat What is {x} and $HOME?")
        magic(shell, "chat --conversation second", "A multi-line\nprompt with {x}")
    texts = [o.data["text/plain"] for o in captured.outputs]
    assert len(texts) == 2
    assert 'You said: "What is {x} and $HOME?"' in texts[0]
    assert "SHOULD NOT APPEAR" not in "".join(texts)
    assert "A multi-line\nprompt with {x}" in texts[1]
    conversations = get_engine().conversations
    assert len(conversations.get("second").messages) == 2
    assert len(conversations.get("default").messages) == 2


def test_chat_with_a_tool(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    assert repr(magic(shell, "tools get_weather")) == "tools: `get_weather`"
    with capture_output() as captured:
        magic(shell, "chat What is the weather in Paris?")
    assert "get_weather returned Sunny in Paris" in captured.outputs[0].data["text/plain"]


def test_model_show_and_set(shell: InteractiveShell) -> None:
    assert repr(magic(shell, "model")) == "model: `offline`"
    assert repr(magic(shell, "model scripted")) == "model set to `scripted:scripted`"
    assert get_engine().model == "scripted:scripted"


def test_widget_subcommands_return_widgets(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    assert repr(magic(shell, "ui")) == "ChatWidget(conversation='default')"
    assert repr(magic(shell, "monitor")) == "BusMonitor(max_rows=20)"
    assert repr(magic(shell, "form PingCommand")) == "CommandForm(PingCommand)"


def test_log_frames(shell: InteractiveShell) -> None:
    magic(shell, "start --log-file frames.jsonl --quiet")
    magic(shell, "register PingCommand on_ping")
    for n in range(3):
        magic(shell, f"execute PingCommand(n={n})")
    log = magic(shell, "log")
    assert isinstance(log, pd.DataFrame)
    assert len(log) == 12  # 4 lines per execute
    assert len(magic(shell, "log --last 2")) == 2
    assert set(magic(shell, "log --type PingCommand")["type"]) == {"PingCommand"}
    assert len(magic(shell, "commands")) == 3
    assert len(magic(shell, "spans")) == 3
    assert magic(shell, "metrics").empty


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("frobnicate", "unknown subcommand 'frobnicate'; use one of: start, stop"),
        ("", "no subcommand given"),
        ("start --bogus", "%llmgine start: unrecognized arguments: --bogus"),
        ("register PingCommand", "usage: %llmgine register CLASS FUNC"),
        ("register Nope on_ping", "name 'Nope' is not defined in this notebook"),
        ("register PingCommand pongs", "pongs is not a function"),
        ("register pongs on_ping", "pongs is neither a Command nor an Event class"),
        ("execute", "give an expression to execute"),
        (
            "execute PingCommand(n='x')",
            "could not evaluate \"PingCommand(n='x')\": n: Input should be a valid integer",
        ),
        ("execute undefined_name", "NameError: name 'undefined_name' is not defined"),
        ("execute pongs", "pongs is a list, not a Command"),
        ("execute PingCommand()", "No handler is registered for PingCommand"),
        ("publish PingCommand()", "PingCommand() is a PingCommand, not an Event"),
        ("chat", "give a prompt"),
        ("chat --model", "--model needs a value"),
        ("model gpt-5", "Unknown model 'gpt-5'"),
        ("model openai:gpt-4o-mini", "OPENAI_API_KEY"),
        ("tools pongs", "pongs is not a function"),
        ("form", "usage: %llmgine form CLASS"),
        ("form PingedEvent", "PingedEvent is not a Command class"),
        ("log --last many", "%llmgine log: argument --last: invalid int value: 'many'"),
    ],
)
def test_user_errors_are_one_readable_line_and_fail_the_cell(
    shell: InteractiveShell, line: str, message: str
) -> None:
    magic(shell, "start --quiet")
    with capture_output() as captured:
        result = shell.run_cell(f"%llmgine {line}")
    assert isinstance(result.error_in_exec, MagicError)
    assert message in str(result.error_in_exec)
    shown = captured.stdout.strip().splitlines()
    assert shown == [f"llmgine: {result.error_in_exec}"]
    assert "Traceback" not in captured.stdout
    assert shell.run_cell("1 + 1").result == 2  # the shell is still usable


def test_a_cell_body_is_only_for_chat(shell: InteractiveShell) -> None:
    result = shell.run_cell("%%llmgine status\nbody")
    assert "only `%%llmgine chat` takes a cell body" in str(result.error_in_exec)
    result = shell.run_cell("%%llmgine chat --model offline extra words\nbody")
    assert "unexpected text after the options" in str(result.error_in_exec)


def test_a_failed_chat_is_one_line(shell: InteractiveShell) -> None:
    from llmgine.llm import ScriptedProvider

    magic(shell, "start --quiet")
    get_engine().provider = ScriptedProvider([])  # no replies: the provider fails
    with capture_output() as captured:
        result = shell.run_cell("%llmgine chat hello")
    assert "no replies left" in str(result.error_in_exec)
    assert captured.stdout.strip().startswith("llmgine: The prompt failed")


def test_a_question_mark_at_the_end_is_part_of_the_prompt(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    with capture_output() as captured:
        result = shell.run_cell("%llmgine chat Is it sunny in Paris?")
    assert result.error_in_exec is None
    assert 'You said: "Is it sunny in Paris?"' in captured.outputs[0].data["text/plain"]
    with capture_output() as captured:
        result = shell.run_cell("%llmgine?")  # alone: IPython's help, as usual
    assert result.error_in_exec is None
    assert "You said" not in captured.stdout


def test_the_transformer_leaves_other_lines_alone() -> None:
    from llmgine.notebook.magics import keep_question_marks

    lines = ["x = 1?\n", "%llmgine?\n", "%%llmgine chat\n"]
    assert keep_question_marks(lines) == lines
    assert keep_question_marks(["%%llmgine chat\n", "%llmgine chat why?\n"])[1] == (
        "%llmgine chat why?\n"
    )
    assert keep_question_marks(["    %llmgine chat why?\n"]) == [
        "    get_ipython().run_line_magic('llmgine', 'chat why?')\n"
    ]


def test_export_sends_the_logs_spans_over_otlp(shell: InteractiveShell) -> None:
    """%llmgine export against a small OTLP/HTTP receiver that decodes what it gets."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    names: list[str] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    names.extend(span.name for span in scope.spans)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        magic(shell, "start --log-file export.jsonl --quiet")
        magic(shell, "register PingCommand on_ping")
        for n in range(3):
            magic(shell, f"execute PingCommand(n={n})")
        url = f"http://127.0.0.1:{server.server_address[1]}"
        note = magic(shell, f"export --otlp {url}")
        assert repr(note) == f"exported 3 spans to {url}/v1/traces"
        assert names == ["PingCommand"] * 3
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    with pytest.raises(MagicError, match="did not accept 3 span"):
        magic(shell, f"export --otlp {url}")  # the receiver is gone
