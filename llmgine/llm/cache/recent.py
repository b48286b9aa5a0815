"""The answers a cache used last, kept in memory: a repeated hit skips the file."""

from __future__ import annotations

import sys
from collections import OrderedDict

__all__ = ["MAX_BYTES", "RecentAnswers"]

MAX_BYTES = 64 * 1024 * 1024
"""At most this much memory for the answers' text (as JSON), however long the answers."""


class RecentAnswers:
    """Up to ``size`` answers by key, the least recently used dropped first.

    Read before the store, filled by its reads and writes, emptied by ``clear``. An
    answer is the same wherever it is read, so the only difference a process sees is
    that a ``clear()`` made by another process reaches it when the answer drops out.
    An answer is kept as the JSON text the store keeps: each hit reads it into a
    :class:`~llmgine.llm.types.Completion` of its own (cheaper than a deep copy, and
    nothing a caller changes reaches what is kept).

    Args:
        size: How many answers to keep; 0 keeps none.
        max_bytes: How much memory their text may take in all, as ``sys.getsizeof``
            counts it (1, 2 or 4 bytes a character, by the widest one), the least
            recent going first.
    """

    def __init__(self, size: int, *, max_bytes: int = MAX_BYTES) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        """The memory the answers kept take, in bytes."""
        self._answers: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: str) -> str | None:
        """The answer kept under ``key`` (now the most recent), or ``None``."""
        answer = self._answers.get(key)
        if answer is not None:
            self._answers.move_to_end(key)
        return answer

    def put(self, key: str, answer: str) -> None:
        """Keep ``answer`` under ``key``, dropping the least recent beyond the bounds."""
        size = sys.getsizeof(answer)
        if self.size <= 0 or size > self.max_bytes:
            return
        before = self._answers.get(key)
        if before is not None:
            self.bytes -= sys.getsizeof(before)
        self._answers[key] = answer
        self._answers.move_to_end(key)
        self.bytes += size
        while len(self._answers) > self.size or self.bytes > self.max_bytes:
            self.bytes -= sys.getsizeof(self._answers.popitem(last=False)[1])

    def clear(self) -> None:
        """Forget every answer."""
        self._answers.clear()
        self.bytes = 0
