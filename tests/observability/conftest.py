"""Collectors on 127.0.0.1: a small one that counts spans, one that never answers, and Phoenix.

``collector`` is an OTLP/HTTP endpoint (``http.server``) that decodes every
``ExportTraceServiceRequest`` with ``opentelemetry-proto`` and keeps the spans'
names (or refuses a number of requests: ``refuse``); ``hung_collector`` accepts
connections and never answers.

A real Arize Phoenix server on 127.0.0.1, from PyPI, in its own cached virtualenv.
Phoenix is large and pins its own dependencies, so it does not go into the
``dev`` extra: the fixture installs ``arize-phoenix`` once into a virtualenv
under the user's cache directory (``$LLMGINE_TEST_CACHE``, else
``$XDG_CACHE_HOME/llmgine-tests``, else ``~/.cache/llmgine-tests``) and reuses it.
The server runs with telemetry and every outside resource turned off, on free
loopback ports, with a throwaway database; it is stopped by its pid.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llmgine._processes import free_port

PHOENIX_VERSION = "20.26.1"


@dataclass
class Collector:
    """A running OTLP/HTTP endpoint and what it received so far."""

    url: str
    names: list[str] = field(default_factory=list)
    """The names of the spans received, in order."""
    requests: int = 0
    received: threading.Condition = field(default_factory=threading.Condition)
    refuse: int = 0
    """Requests still to be refused (answered ``refuse_code``, their spans not kept)."""
    refuse_code: int = 503
    refuse_after: float = 0.0
    """Seconds a refused request waits for its answer."""

    def wait_for(self, spans: int, timeout: float = 60.0) -> bool:
        """Wait until ``spans`` spans have arrived."""
        with self.received:
            return self.received.wait_for(lambda: len(self.names) >= spans, timeout)


@pytest.fixture
def collector() -> Iterator[Collector]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    state = Collector(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.received:
                state.requests += 1
                refused = state.refuse > 0
                state.refuse -= refused
            if refused:
                time.sleep(state.refuse_after)
                self.send_response(state.refuse_code)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            request = ExportTraceServiceRequest.FromString(body)
            names = [
                span.name
                for resource in request.resource_spans
                for scope in resource.scope_spans
                for span in scope.spans
            ]
            with state.received:
                state.names.extend(names)
                state.received.notify_all()
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass  # no access log on stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def hung_collector() -> Iterator[str]:
    """The URL of a server that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # the kernel completes the handshakes; nobody ever reads
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _cache_dir() -> Path:
    explicit = os.environ.get("LLMGINE_TEST_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmgine-tests"


def phoenix_python() -> Path:
    """The Python of a virtualenv with arize-phoenix installed (installed on first use)."""
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    venv = _cache_dir() / f"phoenix-{PHOENIX_VERSION}-{py}"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    if done.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time, even across pytest runs
        if done.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        result = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"arize-phoenix=={PHOENIX_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=1500,
        )
        if result.returncode != 0:
            tail = "\n".join(result.stderr.splitlines()[-20:])
            pytest.fail(f"Installing arize-phoenix=={PHOENIX_VERSION} failed:\n{tail}")
        done.write_text(f"installed in {time.monotonic() - started:.0f} s\n")
    return python


@dataclass(frozen=True)
class Phoenix:
    """A running Phoenix server and the Python that can talk to it with Phoenix's client."""

    url: str
    python: Path

    def spans(self, project: str, expected: int, timeout: float = 60.0) -> list[dict[str, object]]:
        """The project's spans through Phoenix's own client (``get_spans_dataframe``).

        Phoenix ingests asynchronously: this polls until ``expected`` spans are there.
        """
        script = """
import json, sys, time
from phoenix.client import Client
url, project, expected, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
client = Client(base_url=url)
deadline = time.monotonic() + timeout
while True:
    try:
        df = client.spans.get_spans_dataframe(project_identifier=project, limit=10000)
    except Exception:  # the project appears with its first span
        df = None
    if (df is not None and len(df) >= expected) or time.monotonic() > deadline:
        break
    time.sleep(0.25)
rows = [] if df is None else json.loads(df.reset_index(drop=True).to_json(orient="records"))
print(json.dumps(rows))
"""
        out = subprocess.run(
            [str(self.python), "-c", script, self.url, project, str(expected), str(timeout)],
            capture_output=True,
            text=True,
            timeout=timeout + 60,
            env=_quiet_env(),
        )
        assert out.returncode == 0, out.stderr[-3000:]
        rows: list[dict[str, object]] = json.loads(out.stdout.strip().splitlines()[-1])
        return rows


def _quiet_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))}
    env.update(
        PHOENIX_TELEMETRY_ENABLED="false",  # no FullStory or Scarf pixels
        PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",  # no web fonts, no WASM download
        PHOENIX_DISABLE_AGENT_ASSISTANT="true",
        PHOENIX_ENABLE_PROMETHEUS="false",
        DO_NOT_TRACK="1",
        # Belt and braces: any HTTP call off this machine goes to a closed loopback port.
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    python = phoenix_python()
    work = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = free_port(), free_port()
    env = _quiet_env()
    env.update(
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_WORKING_DIR=str(work),
        PHOENIX_SQL_DATABASE_URL=f"sqlite:///{work / 'phoenix.db'}",
    )
    log = (work / "server.log").open("wb")
    server = subprocess.Popen(
        [str(python), "-m", "phoenix.server.main", "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=work,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                tail = (work / "server.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"Phoenix exited with {server.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("Phoenix did not answer /healthz within 180 s")
            time.sleep(0.25)
        yield Phoenix(url=url, python=python)
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
