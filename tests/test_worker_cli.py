"""``python -m llmgine worker``: every bad start is one line on stderr and a non-zero exit.

Real processes, as a user runs them; none of these needs a Redis server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmgine._processes import free_port

APPS = {
    "okapp.py": "def setup(bus):\n    pass\n",
    "syntaxapp.py": "def setup(bus)\n    pass\n",
    "nameapp.py": "x = undefined_name\n\ndef setup(bus):\n    pass\n",
    "depapp.py": "import no_such_dependency_xyz\n\ndef setup(bus):\n    pass\n",
    "raisingapp.py": "raise RuntimeError('config file missing')\n",
    "badsetup.py": "def setup(bus):\n    raise KeyError('OPENAI_API_KEY')\n",
}


def run_worker_cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "LLMGINE_REDIS_URL"}
    return subprocess.run(
        [sys.executable, "-m", "llmgine", "worker", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**environment, **(env or {})},
    )


@pytest.fixture
def apps(tmp_path: Path) -> Path:
    for name, text in APPS.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def assert_one_line(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert done.returncode != 0
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["okapp:setup", "--redis", "127.0.0.1:6379"], ["Not a Redis URL"]),
        (["syntaxapp:setup"], ["Cannot import 'syntaxapp'", "SyntaxError", "syntaxapp.py:1"]),
        (["nameapp:setup"], ["Cannot import 'nameapp'", "NameError", "undefined_name"]),
        (["depapp:setup"], ["Cannot import 'depapp'", "no_such_dependency_xyz"]),
        (["raisingapp:setup"], ["RuntimeError: config file missing", "raisingapp.py:1"]),
        (["nosuchapp:setup"], ["No module named 'nosuchapp'", "PYTHONPATH"]),
        (["okapp:nothing"], ["okapp has no function 'nothing'"]),
        (["okapp"], ["MODULE:FUNCTION"]),
        (["badsetup:setup"], ["badsetup:setup(bus) raised KeyError", "badsetup.py:2"]),
        (["okapp:setup", "--heartbeat", "nan"], ["--heartbeat", "'nan'"]),
        (["okapp:setup", "--heartbeat", "inf"], ["--heartbeat", "'inf'"]),
        (["okapp:setup", "--claim-after", "0"], ["--claim-after", "'0'"]),
        (["okapp:setup", "--claim-after", "-5"], ["--claim-after", "'-5'"]),
        (["okapp:setup", "--claim-after", "soon"], ["--claim-after", "'soon'"]),
        (["okapp:setup", "--max-concurrency", "0"], ["--max-concurrency", "'0'"]),
        (["okapp:setup", "--claim-after", "1", "--heartbeat", "1"], ["at least twice"]),
    ],
)
def test_a_bad_worker_start_is_one_line_and_a_failure(
    apps: Path, args: list[str], words: list[str]
) -> None:
    if "--redis" not in args:
        args = [*args, "--redis", f"redis://127.0.0.1:{free_port()}/0"]
    assert_one_line(run_worker_cli(apps, *args), *words)


@pytest.mark.timeout(120)
def test_an_unreachable_redis_is_one_line_without_the_password(apps: Path) -> None:
    url = f"redis://app:s3cr3t-pw@127.0.0.1:{free_port()}/0"
    done = run_worker_cli(apps, "okapp:setup", env={"LLMGINE_REDIS_URL": url})
    line = assert_one_line(done, "127.0.0.1")
    assert "s3cr3t-pw" not in done.stderr + done.stdout
    assert line.startswith("llmgine: ")


@pytest.mark.timeout(120)
def test_a_password_on_the_command_line_is_warned_about_and_never_shown(apps: Path) -> None:
    url = f"redis://:s3cr3t%23pw@127.0.0.1:{free_port()}/0"
    done = run_worker_cli(apps, "okapp:setup", "--redis", url)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "s3cr3t" not in done.stderr + done.stdout
    assert "LLMGINE_REDIS_URL" in done.stderr  # the way to keep it out of ps


@pytest.mark.timeout(120)
def test_no_redis_url_anywhere_says_both_ways_to_give_one(apps: Path) -> None:
    done = run_worker_cli(apps, "okapp:setup")
    assert_one_line(done, "--redis URL", "LLMGINE_REDIS_URL")


def test_the_help_documents_the_environment_variable(apps: Path) -> None:
    done = run_worker_cli(apps, "--help")
    assert done.returncode == 0
    assert "LLMGINE_REDIS_URL" in done.stdout
    assert "a second one: exit at once" in " ".join(done.stdout.split())


def test_the_worker_passes_its_delivery_and_timeout_options_to_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import llmgine.bus.remote.worker as worker_module
    from llmgine.__main__ import main

    seen: list[dict[str, object]] = []

    async def fake_run_worker(spec: str, url: str, **kwargs: object) -> None:
        seen.append(kwargs["options"])  # type: ignore[arg-type]

    monkeypatch.setattr(worker_module, "run_worker", fake_run_worker)
    args = ["worker", "app:setup", "--redis", "redis://127.0.0.1:1/0"]
    assert main([*args, "--max-deliveries", "5", "--connect-timeout", "2.5"]) == 0
    assert main([*args, "--stop-timeout", "9"]) == 0
    assert seen[0]["max_deliveries"] == 5
    assert seen[0]["connect_timeout"] == 2.5
    assert seen[1] == {**seen[1], "max_deliveries": 3, "connect_timeout": 5.0, "stop_timeout": 9.0}
    with pytest.raises(SystemExit):
        main([*args, "--max-deliveries", "0"])
