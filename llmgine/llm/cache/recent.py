"""The answers a cache used last, kept in memory: a repeated hit skips the file."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["RecentAnswers"]


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
    """

    def __init__(self, size: int) -> None:
        self.size = size
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
        """Keep ``answer`` under ``key``, dropping the least recent beyond ``size``."""
        if self.size <= 0:
            return
        self._answers[key] = answer
        self._answers.move_to_end(key)
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)

    def clear(self) -> None:
        """Forget every answer."""
        self._answers.clear()
