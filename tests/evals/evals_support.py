"""What the experiment tests share."""

from __future__ import annotations

from pathlib import Path

from llmgine.bus import MessageBus


def quiet_bus(tmp_path: Path) -> MessageBus:
    """A bus logging to ``tmp_path/logs/run.jsonl``, the console quiet."""
    return MessageBus(
        log_dir=tmp_path / "logs",
        log_filename="run.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
    )
