"""The answers a cache used last, kept in memory: a repeated hit skips the file."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["MAX_CHARS", "RecentAnswers"]

MAX_CHARS = 64 * 1024 * 1024
"""At most this much answer text (as JSON) in memory: a bound however long the answers."""


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
        max_chars: How much text they may take in all (the least recent go first).
    """

    def __init__(self, size: int, *, max_chars: int = MAX_CHARS) -> None:
        self.size = size
        self.max_chars = max_chars
        self.chars = 0
        """The length of the answers kept, in characters."""
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
        if self.size <= 0 or len(answer) > self.max_chars:
            return
        before = self._answers.get(key)
        if before is not None:
            self.chars -= len(before)
        self._answers[key] = answer
        self._answers.move_to_end(key)
        self.chars += len(answer)
        while len(self._answers) > self.size or self.chars > self.max_chars:
            self.chars -= len(self._answers.popitem(last=False)[1])

    def clear(self) -> None:
        """Forget every answer."""
        self._answers.clear()
        self.chars = 0
