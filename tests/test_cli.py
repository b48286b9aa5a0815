"""`python -m llmgine demo` and the README's two Quickstart commands."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmgine.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_offline_and_reports_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--log-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    log = tmp_path / "demo.jsonl"
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert f"The log is {log} ({len(lines)} lines)" in out
    assert out.startswith("llmgine demo: commands and events on one bus")  # says what it shows
    assert "[span]" not in out  # no raw console lines
    assert "metrics published: documents=3, words=23" in out
    assert "failed" in out and "(deliberate: a failure is logged, not fatal)" in out
    assert "latency: the time in the handler (CommandResult.duration_ms)" in out
    hint = " (needs: pip install 'llmgine[lab]')"  # only when JupyterLab is missing
    lab_missing = importlib.util.find_spec("jupyterlab") is None
    assert out.rstrip().endswith("the tutorials in JupyterLab" + (hint if lab_missing else ""))
    assert f"log {log}\n" in out  # what to try next
    assert "(tool call: word_count" in out
    types_ = [line["type"] for line in lines]
    assert types_.count("CommandErrorEvent") == 1
    assert types_.count("SummarizeDocumentCommand") == 3
    assert f"{types_.count('TraceEvent'):4d}  TraceEvent" in out


def test_demo_twice_starts_a_fresh_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["demo", "--log-dir", str(tmp_path)])
    first = (tmp_path / "demo.jsonl").read_text().count("\n")
    main(["demo", "--log-dir", str(tmp_path)])
    assert (tmp_path / "demo.jsonl").read_text().count("\n") == first


def test_lab_opens_the_quickstart(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from llmgine.__main__ import lab_command

    quickstart = "--LabApp.default_url=/lab/tree/notebooks/01_quickstart.ipynb"
    monkeypatch.chdir(ROOT)
    command = lab_command(None)
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]
    assert command[3:5] == [f"--ServerApp.root_dir={ROOT}", quickstart]
    monkeypatch.chdir(tmp_path)  # elsewhere: still the clone's quickstart, found by the package
    assert lab_command(None)[3:5] == [f"--ServerApp.root_dir={ROOT}", quickstart]
    (tmp_path / "other one.ipynb").write_text("{}")
    assert "--LabApp.default_url=/lab/tree/other%20one.ipynb" in lab_command("other one.ipynb")
    assert lab_command(None, ["--port=9999"])[-1] == "--port=9999"
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # a notebook outside the folder: its own folder served
    command = lab_command("../other one.ipynb")
    assert command[3:5] == [
        f"--ServerApp.root_dir={tmp_path}",
        "--LabApp.default_url=/lab/tree/other%20one.ipynb",
    ]


def test_no_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_python_dash_m_runs_as_a_module(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "llmgine", "demo", "--log-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "The log is" in out.stdout


def quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quickstart, re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if not line.startswith("#")]


def test_the_readme_quickstart_is_exactly_two_one_line_commands() -> None:
    commands = quickstart_commands()
    assert len(commands) == 2
    assert "python -m llmgine demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert quickstart_commands()[1] in ci.splitlines()


def test_demo_and_log_report_the_same_command_latency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmgine.analysis import load_events

    main(["demo", "--log-dir", str(tmp_path)])
    demo_out = capsys.readouterr().out
    commands = load_events(tmp_path / "demo.jsonl").llmgine.commands()
    corpus = commands[commands["command_type"] == "SummarizeCorpusCommand"].iloc[0]
    line = next(x for x in demo_out.splitlines() if x.strip().startswith("SummarizeCorpusCommand"))
    assert f"{corpus['duration_ms']:.1f} ms" in line  # the figure `llmgine log` summarizes
    main(["log", str(tmp_path / "demo.jsonl")])
    assert "command latency: time in the handler, CommandResult.duration_ms" in (
        capsys.readouterr().out
    )


def test_log_of_a_missing_path_says_what_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["log", str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"llmgine: No log at {tmp_path / 'nope.jsonl'}: give a .jsonl file or a directory of them"
    )


def test_usage_names_the_command_as_it_was_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/llmgine"])
    main([])
    assert capsys.readouterr().out.startswith("usage: llmgine ")
    monkeypatch.setattr(sys, "argv", ["/somewhere/llmgine/__main__.py"])
    main([])
    assert capsys.readouterr().out.startswith("usage: python -m llmgine ")


def run_cli(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmgine", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_log_of_a_file_that_is_not_a_log_says_so_and_fails() -> None:
    done = run_cli("log", "README.md")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert re.fullmatch(
        r"llmgine: README\.md is not an llmgine log: none of its [\d,]+ lines is an llmgine "
        r"message \(the JSON lines a MessageBus writes\); give a \.jsonl log or a directory "
        r"of them\.",
        line,
    ), line


def test_log_of_an_empty_folder_or_a_folder_of_folders_says_it_holds_no_log(
    tmp_path: Path,
) -> None:
    (tmp_path / "empty").mkdir()
    done = run_cli("log", str(tmp_path / "empty"))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"llmgine: {tmp_path / 'empty'} holds no log: no .jsonl file in it; "
        "give a .jsonl log or a directory of them."
    ]
    (tmp_path / "runs" / "monday").mkdir(parents=True)
    main(["demo", "--log-dir", str(tmp_path / "runs" / "monday")])
    done = run_cli("log", str(tmp_path / "runs"))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"llmgine: {tmp_path / 'runs'} holds no log: no .jsonl file in it, and its folders "
        f"are not read; give one of them: {tmp_path / 'runs' / 'monday'}"
    ]
    assert run_cli("log", str(tmp_path / "runs" / "monday")).returncode == 0


def test_log_of_an_empty_log_file_is_zero_lines_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "new.jsonl").write_text("")
    assert main(["log", str(tmp_path / "new.jsonl")]) == 0
    assert capsys.readouterr().out.startswith("0 lines from")


def test_log_with_a_time_filter_that_keeps_nothing_is_not_called_a_non_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["demo", "--log-dir", str(tmp_path)])
    with (tmp_path / "demo.jsonl").open("a") as log:
        log.write("not json\n")
    assert main(["log", str(tmp_path / "demo.jsonl"), "--since", "2999-01-01"]) == 0
    assert capsys.readouterr().out.count("0 lines from") == 1


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    for args in (["--version"],):
        done = run_cli(*args)
        assert done.returncode == 0
        assert done.stdout.strip() == f"llmgine {version('llmgine')}"
    script = Path(sys.executable).with_name("llmgine")
    if script.exists():  # the console script of this environment
        done = subprocess.run([str(script), "--version"], capture_output=True, text=True)
        assert done.stdout.strip() == f"llmgine {version('llmgine')}"


def test_the_demo_suggests_commands_with_the_interpreter_that_ran_it(tmp_path: Path) -> None:
    python = Path(sys.executable).absolute()
    try:
        shown = str(python.relative_to(ROOT))  # .venv/bin/python from a clone
    except ValueError:
        shown = str(python)
    done = run_cli("demo", "--log-dir", str(tmp_path), PATH="/nonexistent")
    assert done.returncode == 0, done.stderr
    assert f"  {shown} -m llmgine log {tmp_path / 'demo.jsonl'}\n" in done.stdout
    assert f"  {shown} -m llmgine lab\n" in done.stdout
    assert "python -m llmgine" not in done.stdout.replace(f"{shown} -m llmgine", "")


def test_lab_passes_port_and_options_after_dashes_to_jupyterlab(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import llmgine.__main__ as cli

    ran: list[list[str]] = []
    monkeypatch.setattr(cli, "run_forwarding_signals", lambda command: ran.append(command) or 0)
    assert main(["lab", "--port", "8890", "--no-browser", "--", "--ServerApp.token=x"]) == 0
    assert ran[-1][-3:] == ["--port=8890", "--no-browser", "--ServerApp.token=x"]
    with pytest.raises(SystemExit) as exit_:
        main(["lab", "--debug"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unknown option --debug: JupyterLab's own options go after --" in err[0]
    with pytest.raises(SystemExit):
        main(["log", "x.jsonl", "--", "--weird"])  # only lab passes options on


def test_the_demo_asks_to_install_jupyterlab_only_when_it_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec

    def without_lab(name: str, *args: object) -> object:
        return None if name == "jupyterlab" else find_spec(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", without_lab)
    assert main(["demo", "--log-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("the tutorials in JupyterLab (needs: pip install 'llmgine[lab]')")
