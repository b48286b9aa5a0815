"""One default bus and one default engine per kernel, created on first use."""

from __future__ import annotations

from typing import Any

from llmgine.bus.bus import MessageBus
from llmgine.llm.engine import LLMEngine
from llmgine.notebook.sync import run_sync

__all__ = ["Runtime", "get_bus", "get_engine", "get_runtime"]

_ATTRIBUTE = "_llmgine_runtime"
_process_runtime: list[Runtime] = []  # without IPython: one per process, made on first use


class Runtime:
    """The default bus and engine of one kernel (or one IPython shell)."""

    def __init__(self) -> None:
        self.bus: MessageBus | None = None
        self.engine: LLMEngine | None = None
        self.bus_options: dict[str, Any] = {"log_dir": "logs"}

    def get_bus(self) -> MessageBus:
        """The default bus, created and started on the kernel's loop on first use."""
        if self.bus is None:
            self.bus = MessageBus(**self.bus_options)
        if not self.bus.is_running:
            run_sync(self.bus.start())
        return self.bus

    def get_engine(self) -> LLMEngine:
        """The default engine on the default bus (default model), created on first use."""
        bus = self.get_bus()
        if self.engine is None or self.engine.bus is not bus:
            self.engine = LLMEngine(bus)
        return self.engine

    def replace_bus(self, **options: Any) -> MessageBus:
        """Stop the current default bus and start a new one with ``options``."""
        if self.bus is not None:
            run_sync(self.bus.stop())
        self.bus_options = {"log_dir": "logs", **options}
        self.bus = None
        engine = self.engine
        bus = self.get_bus()
        if engine is not None:  # keep the engine's model and tools on the new bus
            self.engine = LLMEngine(bus, provider=engine.provider, tools=list(engine.tools))
        return bus


def get_runtime() -> Runtime:
    """The runtime of the current IPython shell (or of this process without one)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        if not _process_runtime:
            _process_runtime.append(Runtime())
        return _process_runtime[0]
    runtime = getattr(shell, _ATTRIBUTE, None)
    if runtime is None:
        runtime = Runtime()
        setattr(shell, _ATTRIBUTE, runtime)
    return runtime


def get_bus() -> MessageBus:
    """The kernel's default bus, started on the kernel's event loop on first use."""
    return get_runtime().get_bus()


def get_engine() -> LLMEngine:
    """The kernel's default engine (on the default bus), created on first use."""
    return get_runtime().get_engine()
