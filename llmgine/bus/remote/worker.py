"""``python -m llmgine worker MODULE:FUNCTION --redis URL``: a process serving handlers.

The worker makes a bus, calls ``FUNCTION(bus)`` (sync or async) to register
handlers (an ``LLMEngine``, tools, app handlers), connects to the shared bus and
runs until SIGINT or SIGTERM; then it stops taking work, finishes and answers what
it runs, sends what it buffered, flushes its log and exits 0.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmgine.bus.bus import MessageBus
from llmgine.bus.remote.keys import redact
from llmgine.errors import ConfigurationError

__all__ = ["load_setup", "run_worker"]

logger = logging.getLogger(__name__)

READY = "llmgine worker ready"
"""The line a worker prints on stdout once it serves the shared bus."""


def load_setup(spec: str) -> Callable[[MessageBus], Any]:
    """Import ``MODULE:FUNCTION`` and return the function.

    Raises:
        ConfigurationError: The spec is malformed, or the module or function is missing.
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
    except ImportError as exc:
        raise ConfigurationError(f"Cannot import {module_name!r}: {exc}") from exc
    setup = getattr(module, function_name, None)
    if not callable(setup):
        raise ConfigurationError(f"{module_name} has no function {function_name!r}.")
    return setup  # type: ignore[no-any-return]


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
    """
    setup = load_setup(spec)
    bus = MessageBus(log_dir=log_dir, enable_console_metrics=False, enable_console_traces=False)
    await bus.start()
    outcome = setup(bus)
    if inspect.isawaitable(outcome):
        await outcome
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await bus.connect(url, namespace, **(options or {}))
        logger.info("Worker %s serves %s on %s.", spec, namespace, redact(url))
        if ready is not None:
            ready(bus)
        await stop.wait()
        logger.info("Worker %s stopping: finishing what runs.", spec)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await bus.stop()
