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
    assert "| `approve [ID]` |" in text and "`%llmgine approve 3f2a9c1e`" in text
    assert "| `deny [ID [REASON]]` |" in text
    assert "an approval id (or its first 8+ characters) or a call id" in text
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
    assert magic(shell, "status") is bus  # status only reports: the bus stays stopped
    assert not bus.is_running
    assert "stopped" in bus._repr_html_()
    assert (tmp_path / "logs" / "run.jsonl").read_text().count("\n") == 4


def test_status_never_starts_a_bus(shell: InteractiveShell, tmp_path: Path) -> None:
    from llmgine.notebook import get_runtime

    note = magic(shell, "status")
    assert repr(note).startswith("llmgine bus not started yet")
    assert "%llmgine start" in repr(note)
    assert get_runtime().bus is None
    assert not (tmp_path / "logs").exists()


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
    assert magic(shell, "log --type LLMResponseEvent").empty  # a message type, none logged yet
    with pytest.raises(MagicError, match="no message type of that name; did you mean PingCommand"):
        magic(shell, "log --type PingComand")  # a typo is said, not an empty frame
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
    assert "answers only with the replies it is given" in str(result.error_in_exec)
    assert "get_engine().provider.add(" in str(result.error_in_exec)
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


def test_export_reports_the_lines_it_skipped(shell: InteractiveShell) -> None:
    """A line of the log that is no envelope is counted in the note, as the CLI does."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        magic(shell, "start --log-file skipped.jsonl --quiet")
        magic(shell, "register PingCommand on_ping")
        magic(shell, "execute PingCommand(n=1)")
        bus = get_bus()
        bus.flush()
        assert bus.log_path is not None
        with bus.log_path.open("ab") as log:
            log.write(b"not an envelope\n")
        url = f"http://127.0.0.1:{server.server_address[1]}"
        note = magic(shell, f"export --otlp {url}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert repr(note) == (
        f"exported 1 spans to {url}/v1/traces; 1 line(s) could not be read and were skipped"
    )


def test_chat_request_options(shell: InteractiveShell) -> None:
    from llmgine.llm import ScriptedProvider

    magic(shell, "start --quiet")
    magic(shell, "tools get_weather")
    provider = ScriptedProvider([ScriptedProvider.call("get_weather", city="Oslo"), "Done."])
    get_engine().provider = provider
    with capture_output() as captured:
        magic(
            shell,
            "chat --temperature 0.2 --max-tokens 40 --tool-choice get_weather --timeout 30 "
            "Tell me something --not-an-option",
        )
    assert captured.outputs[0].data["text/plain"] == "Done."
    first, second = provider.requests
    assert (first.temperature, first.max_tokens, first.tool_choice) == (0.2, 40, "get_weather")
    assert first.timeout is not None and 0 < first.timeout <= 30
    assert first.messages[-1].content == "Tell me something --not-an-option"
    assert second.tool_choice is None  # a forced tool runs once, then the model answers


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("chat --temperature warm hi", "--temperature needs a number, not 'warm'"),
        ("chat --max-tokens 1.5 hi", "--max-tokens needs a whole number, not '1.5'"),
        ("chat --timeout -1 hi", "--timeout: Input should be greater than 0"),
        ("chat --tool-choice nope hi", "tool_choice='nope' needs tools"),
        ("chat --temprature 1 hi", "unknown chat option --temprature"),
    ],
)
def test_chat_option_errors_are_one_line(shell: InteractiveShell, line: str, error: str) -> None:
    magic(shell, "start --quiet")
    with capture_output():
        result = shell.run_cell(f"%llmgine {line}")
    assert error in str(result.error_in_exec)


def test_the_transformer_leaves_lines_inside_strings_alone() -> None:
    from llmgine.notebook.magics import keep_question_marks

    cell = ['text = """\n', "%llmgine chat why?\n", '"""\n', "%llmgine chat really?\n"]
    out = keep_question_marks(cell)
    assert out[:3] == cell[:3]  # inside the string literal: untouched
    assert out[3] == "get_ipython().run_line_magic('llmgine', 'chat really?')\n"
    quoted = ['s = \'a """ b\'  # """\n', "%llmgine chat still a magic?\n"]
    assert keep_question_marks(quoted)[1].startswith("get_ipython()")


def test_a_failed_start_keeps_the_previous_settings(shell: InteractiveShell) -> None:
    magic(shell, "start --log-file first.jsonl --quiet")
    result = shell.run_cell("%llmgine start --log-dir /proc/llmgine-cannot-write")
    assert isinstance(result.error_in_exec, MagicError)
    assert "could not start the bus" in str(result.error_in_exec)
    assert "previous settings are kept" in str(result.error_in_exec)
    # The next magic works again, on the previous log, instead of repeating the error.
    assert magic(shell, "status").log_path == Path("logs/first.jsonl")


def test_a_chat_panel_follows_a_restarted_bus_into_the_new_log(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    magic(shell, "start --log-file old.jsonl --quiet")
    panel = magic(shell, "ui")
    magic(shell, "start --log-file new.jsonl --quiet")
    task = panel.send("hello after the restart")
    assert task is not None
    from llmgine.notebook import run_sync

    run_sync(task)
    assert panel.bus is get_bus()
    magic(shell, "stop")
    assert "hello after the restart" in (tmp_path / "logs" / "new.jsonl").read_text()
    assert "hello after the restart" not in (tmp_path / "logs" / "old.jsonl").read_text()


@pytest.mark.parametrize("line", ["stop now please", "status now", "help me", "ui big"])
def test_subcommands_without_arguments_refuse_extra_words(
    shell: InteractiveShell, line: str
) -> None:
    magic(shell, "start --quiet")
    result = shell.run_cell(f"%llmgine {line}")
    assert "takes no arguments" in str(result.error_in_exec)
    assert get_bus().is_running  # `stop now please` did not stop the bus


def test_a_class_with_required_fields_says_which(shell: InteractiveShell) -> None:
    shell.run_cell("class Needy(Command):\n    when: int\n    where: str")
    result = shell.run_cell("%llmgine execute Needy")
    assert str(result.error_in_exec) == (
        "Needy needs when, where: `%llmgine execute Needy(when=...)`"
    )


def test_approve_and_deny_decide_calls_waiting_in_a_chat_panel(shell: InteractiveShell) -> None:
    import asyncio

    from llmgine.llm import ScriptedProvider, ToolApprovalRequestedEvent
    from llmgine.notebook import run_sync

    magic(shell, "start --quiet")
    assert repr(magic(shell, "tools --approval get_weather")) == (
        "tools: `get_weather` (needs approval)"
    )
    engine = get_engine()
    engine.provider = ScriptedProvider(
        [
            ScriptedProvider.call("get_weather", call_id="w1", city="Paris"),
            "Sunny, as approved.",
            ScriptedProvider.call("get_weather", call_id="w2", city="Oslo"),
            "No weather then.",
        ]
    )
    panel = magic(shell, "ui")
    asked = asyncio.Event()
    engine.bus.register_event_handler(ToolApprovalRequestedEvent, lambda e: asked.set())

    async def wait_for_the_request() -> None:
        await asyncio.wait_for(asked.wait(), 10)
        asked.clear()

    task = panel.send("weather in Paris?")
    run_sync(wait_for_the_request())
    assert repr(magic(shell, "approve")) == "approved get_weather (w1)"  # the only waiting call
    run_sync(task)
    assert panel.history[-1] == ("assistant", "Sunny, as approved.")

    task = panel.send("weather in Oslo?")
    run_sync(wait_for_the_request())
    result = shell.run_cell("%llmgine approve w1")
    assert "no tool call 'w1' is waiting for approval; waiting now: w2" in str(result.error_in_exec)
    assert repr(magic(shell, "deny w2 not today")) == "denied get_weather (w2)"
    run_sync(task)
    assert panel.history[-1] == ("assistant", "No weather then.")
    request = engine.provider.requests[-1]
    assert request.messages[-1].content == (
        "Error: get_weather was not run: the user denied the call: not today"
    )
    result = shell.run_cell("%llmgine approve")
    assert (
        "give the approval id (or a call id): `%llmgine approve ID`; waiting for approval: none"
        in str(result.error_in_exec)
    )


def test_mcp_add_list_and_remove_a_real_server(shell: InteractiveShell) -> None:
    import sys

    magic(shell, "start --quiet")
    note = magic(shell, f"mcp add --name clock -- {sys.executable} -m mcp_server_time")
    assert repr(note) == "MCP server `clock` added; tools: `get_current_time`, `convert_time`"
    listed = repr(magic(shell, "mcp list"))
    assert "| `clock` |" in listed and "mcp_server_time" in listed
    assert "get_current_time, convert_time" in listed
    with capture_output() as captured:
        magic(shell, "chat get_current_time timezone=Europe/Oslo")
    assert '"timezone": "Europe/Oslo"' in captured.outputs[0].data["text/plain"]
    assert repr(magic(shell, "mcp remove clock")) == (
        "MCP server `clock` stopped; its tools are withdrawn"
    )
    assert repr(magic(shell, "mcp list")).startswith("no MCP servers yet")
    assert "get_current_time" not in get_engine().tools


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("mcp", "usage: %llmgine mcp add"),
        ("mcp frob", "usage: %llmgine mcp add"),
        ("mcp add", "give the server's command after `--`"),
        ("mcp add --url http://127.0.0.1:9/mcp -- x", "or its --url, not both"),
        ("mcp add --env SECRET -- x", "--env takes KEY=VALUE; got 'SECRET'"),
        ("mcp remove", "usage: %llmgine mcp add"),
        ("mcp remove nope", "no MCP server named 'nope'; added servers: none"),
        ("mcp list -- x", "only `mcp add` takes a command after --"),
        (
            "mcp add -- no-such-mcp-server-xyz",
            "cannot find the MCP server command 'no-such-mcp-server-xyz'",
        ),
    ],
)
def test_mcp_mistakes_are_one_line(shell: InteractiveShell, line: str, message: str) -> None:
    magic(shell, "start --quiet")
    result = shell.run_cell(f"%llmgine {line}")
    assert isinstance(result.error_in_exec, MagicError)
    assert message in str(result.error_in_exec)


def test_stop_ends_the_mcp_server_processes(shell: InteractiveShell) -> None:
    import sys

    magic(shell, "start --quiet")
    magic(shell, f"mcp add --env TZ_SECRET=hunter2 -- {sys.executable} -m mcp_server_time")
    (server,) = get_engine().mcp_servers
    assert "hunter2" not in repr(server) and "TZ_SECRET" in repr(server)
    assert "hunter2" not in repr(magic(shell, "mcp list"))
    assert server.connected
    magic(shell, "stop")
    assert not server.connected
    assert len(get_engine().mcp_servers) == 0


def test_a_chat_cell_asks_for_approval_on_its_input_line(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    magic(shell, "start --quiet")
    magic(shell, "tools --approval get_weather")
    asked: list[str] = []
    answers = iter(["y", "no thanks"])

    def answer(question: str) -> str:
        asked.append(question)
        return next(answers)

    monkeypatch.setattr(builtins, "input", answer)
    with capture_output() as captured:
        magic(shell, "chat What is the weather in Paris?")
        magic(shell, "chat What is the weather in Rome?")
    assert asked == [
        "tool · get_weather(city='Paris'): run it? [y/N] ",
        "tool · get_weather(city='Rome'): run it? [y/N] ",
    ]
    first, second = (o.data["text/plain"] for o in captured.outputs)
    assert "get_weather returned Sunny in Paris" in first
    assert "the user denied the call: no thanks" in second


def test_without_an_input_line_a_chat_cell_denies_at_once(shell: InteractiveShell) -> None:
    magic(shell, "start --quiet")
    magic(shell, "tools --approval get_weather")
    get_engine().approvals.timeout = 600  # the denial must not wait for this
    with capture_output() as captured:  # pytest's captured stdin cannot be read
        magic(shell, "chat What is the weather in Paris?")
    reply = captured.outputs[0].data["text/plain"]
    assert "cannot answer questions while a cell runs" in reply
    assert "%llmgine ui" in reply
