"""Cache files for the write-behind tests: one that counts its transactions, one held shut."""

from __future__ import annotations

import threading
from pathlib import Path

from llmgine.llm.cache import SQLiteStore


class CountingStore(SQLiteStore):
    """Counts the answers each write job takes (one job: one transaction)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.jobs: list[int] = []

    def _write_puts(self) -> None:
        with self._lock:
            waiting = len(self._puts)
        if waiting:
            self.jobs.append(waiting)
        super()._write_puts()


class GatedStore(SQLiteStore):
    """Its writes wait until the test opens the gate (a file another program has locked)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()

    def _write_puts(self) -> None:
        self.gate.wait(120)
        super()._write_puts()
