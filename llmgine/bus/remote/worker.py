"""``python -m llmgine worker MODULE:FUNCTION --redis URL``: a process serving handlers.

The worker makes a bus, calls ``FUNCTION(bus)`` (sync or async) to register
handlers (an ``LLMEngine``, tools, app handlers), connects to the shared bus and
runs until SIGINT or SIGTERM; then it stops taking work, finishes and answers what
it runs, sends what it buffered, flushes its log and exits 0. A second SIGINT or
SIGTERM while it drains stops it at once: it says what it abandons (the commands
running here, which another worker takes over after ``claim_after`` seconds, and
the events not sent yet), flushes its log and exits with ``128 + signal``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from llmgine.bus.bus import MessageBus
from llmgine.bus.remote.keys import redact
from llmgine.errors import ConfigurationError

if TYPE_CHECKING:
    from llmgine.bus.remote.link import RedisLink

__all__ = ["load_setup", "run_worker"]

logger = logging.getLogger(__name__)

READY = "llmgine worker ready"
"""The line a worker prints on stdout once it serves the shared bus."""

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of ``exc`` (or of its syntax error)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line (a syntax error without its source excerpt)."""
    text = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    text = " ".join(str(text).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_setup(spec: str) -> Callable[[MessageBus], Any]:
    """Import ``MODULE:FUNCTION`` and return the function.

    Raises:
        ConfigurationError: The spec is malformed, the module is missing or fails
            to import (any exception while importing it: a syntax error, a name
            error, ...), or it has no such function.
    """
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise ConfigurationError(
            f"Expected MODULE:FUNCTION, e.g. myapp.workers:setup; got {spec!r}."
        )
    if "" not in sys.path:
        sys.path.insert(0, "")  # like python -m: modules in the current directory are found
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            raise ConfigurationError(
                f"No module named {exc.name!r} (for {spec}): run the worker from the folder "
                "that holds it, or add that folder to PYTHONPATH."
            ) from None
        raise ConfigurationError(
            f"Cannot import {module_name!r}: {_describe(exc)} ({_where(exc)})"
        ) from exc
    except Exception as exc:  # anything a module does at import: reported in one line
        raise ConfigurationError(
            f"Cannot import {module_name!r}: {_describe(exc)} ({_where(exc)})"
        ) from exc
    setup = getattr(module, function_name, None)
    if not callable(setup):
        raise ConfigurationError(f"{module_name} has no function {function_name!r}.")
    return setup  # type: ignore[no-any-return]


def _running(link: RedisLink) -> int:
    """How many commands this worker runs now (its runner's tasks)."""
    return link.runner.running


class _Stopping:
    """The worker's SIGINT/SIGTERM: the first asks it to drain, a second forces it out."""

    def __init__(self, spec: str, claim_after: float) -> None:
        self.spec = spec
        self.claim_after = claim_after
        self.asked = asyncio.Event()
        self.bus: MessageBus | None = None

    def __call__(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.asked.is_set():
            self.force(name, signum)
        self.asked.set()
        link = self.bus.remote if self.bus is not None else None
        if link is None:
            logger.warning(
                "Worker %s stopping on %s before it joined the shared bus; send SIGINT or "
                "SIGTERM again to stop at once.",
                self.spec,
                name,
            )
            return
        logger.warning(
            "Worker %s stopping on %s: finishing %d running command(s) and sending %d buffered "
            "event(s); send SIGINT or SIGTERM again to stop at once and abandon them.",
            self.spec,
            name,
            _running(link),
            link.events.buffered,
        )

    def force(self, name: str, signum: int) -> NoReturn:
        """Exit now: say what is abandoned, flush the log, ``os._exit(128 + signum)``."""
        link = self.bus.remote if self.bus is not None else None
        if link is None:
            abandoned = "nothing ran yet"
        else:
            abandoned = (
                f"{_running(link)} running command(s) (another worker takes them over after "
                f"{self.claim_after:g} s; they may run again there) and "
                f"{link.events.buffered} event(s) not sent to the shared bus"
            )
        logger.error("Worker %s: second %s, exiting now; abandoned %s.", self.spec, name, abandoned)
        try:
            if self.bus is not None:
                self.bus.flush()  # the log keeps what was accepted
        except Exception:
            logger.exception("Could not flush the log before exiting.")
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(128 + signum)


async def run_worker(
    spec: str,
    url: str,
    *,
    namespace: str = "llmgine",
    log_dir: str | Path | None = None,
    options: dict[str, Any] | None = None,
    ready: Callable[[MessageBus], None] | None = None,
) -> None:
    """Run a worker until SIGINT/SIGTERM (see the module docstring).

    Args:
        spec: ``MODULE:FUNCTION``; ``FUNCTION(bus)`` registers the handlers.
        url: The Redis URL.
        namespace: The shared bus's namespace.
        log_dir: Where this process writes its JSONL log; ``None`` writes none.
        options: More ``bus.connect()`` options (``heartbeat``, ``claim_after``, ...).
        ready: Called once the worker serves the shared bus.

    Raises:
        ConfigurationError: ``spec`` cannot be loaded, or ``FUNCTION(bus)`` raised
            (the message says where); ``bus.connect()``'s errors as they are.
    """
    options = options or {}
    setup = load_setup(spec)
    loop = asyncio.get_running_loop()
    stopping = _Stopping(spec, float(options.get("claim_after", 15.0)))
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, stopping, sig)
    try:
        bus = MessageBus(log_dir=log_dir, enable_console_metrics=False, enable_console_traces=False)
        stopping.bus = bus
        try:
            await bus.start()
            await _call_setup(setup, bus, spec)
            if not await _until_stopped(bus.connect(url, namespace, **options), stopping):
                return
            logger.info("Worker %s serves %s on %s.", spec, namespace, redact(url))
            if ready is not None:
                ready(bus)
            await stopping.asked.wait()
        finally:
            await bus.stop()  # the signal handlers stay: a second signal forces the exit
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


async def _call_setup(setup: Callable[[MessageBus], Any], bus: MessageBus, spec: str) -> None:
    try:
        outcome = setup(bus)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception as exc:
        raise ConfigurationError(f"{spec}(bus) raised {_describe(exc)} ({_where(exc)})") from exc


async def _until_stopped(work: Any, stopping: _Stopping) -> bool:
    """Await ``work`` unless a signal comes first (then cancel it); say whether it ran."""
    task = asyncio.ensure_future(work)
    asked = asyncio.ensure_future(stopping.asked.wait())
    try:
        await asyncio.wait({task, asked}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        asked.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return False
    task.result()
    return True
