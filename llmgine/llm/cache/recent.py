"""The answers a cache used last, kept in memory: a repeated hit skips the file."""

from __future__ import annotations

import sys
from collections import OrderedDict

__all__ = ["MAX_BYTES", "RecentAnswers"]

MAX_BYTES = 64 * 1024 * 1024
"""At most this much memory for the answers' text (as JSON), however long the answers."""

_clears: dict[str, int] = {}
"""How many times each file was cleared in this process: every ``RecentAnswers`` of a
file compares it with the count it last saw, and forgets its answers when it grew."""


class RecentAnswers:
    """Up to ``size`` answers by key, the least recently used dropped first.

    Read before the store, filled by its reads and writes, emptied by ``clear``. An
    answer is the same wherever it is read, so the only difference a process sees is
    that a ``clear()`` made by another process reaches it when the answer drops out.
    Within a process a ``clear()`` empties every ``RecentAnswers`` of the same ``scope``
    (the file): each ``LLMCache`` on one file answers no more than the file does.
    An answer is kept as the JSON text the store keeps: each hit reads it into a
    :class:`~llmgine.llm.types.Completion` of its own (cheaper than a deep copy, and
    nothing a caller changes reaches what is kept).

    Args:
        size: How many answers to keep; 0 keeps none.
        max_bytes: How much memory their text may take in all, as ``sys.getsizeof``
            counts it (1, 2 or 4 bytes a character, by the widest one), the least
            recent going first.
        scope: The file the answers are from (its resolved path), whose clear by any
            ``RecentAnswers`` in this process empties this one too; ``None``: only its
            own ``clear``.
    """

    def __init__(self, size: int, *, max_bytes: int = MAX_BYTES, scope: str | None = None) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        """The memory the answers kept take, in bytes."""
        self._answers: OrderedDict[str, str] = OrderedDict()
        self._scope = scope
        self._seen = _clears.get(scope, 0) if scope is not None else 0

    def _check(self) -> None:
        """Forget every answer if the file was cleared (by anyone here) since last looked."""
        if self._scope is not None and _clears.get(self._scope, 0) != self._seen:
            self._forget()
            self._seen = _clears.get(self._scope, 0)

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: str) -> str | None:
        """The answer kept under ``key`` (now the most recent), or ``None``."""
        self._check()
        answer = self._answers.get(key)
        if answer is not None:
            self._answers.move_to_end(key)
        return answer

    def put(self, key: str, answer: str) -> None:
        """Keep ``answer`` under ``key``, dropping the least recent beyond the bounds."""
        size = sys.getsizeof(answer)
        if self.size <= 0 or size > self.max_bytes:
            return
        self._check()
        before = self._answers.get(key)
        if before is not None:
            self.bytes -= sys.getsizeof(before)
        self._answers[key] = answer
        self._answers.move_to_end(key)
        self.bytes += size
        while len(self._answers) > self.size or self.bytes > self.max_bytes:
            self.bytes -= sys.getsizeof(self._answers.popitem(last=False)[1])

    def discard(self, key: str) -> None:
        """Forget the answer under ``key``, if any."""
        answer = self._answers.pop(key, None)
        if answer is not None:
            self.bytes -= sys.getsizeof(answer)

    def clear(self) -> None:
        """Forget every answer, here and in every ``RecentAnswers`` of the same scope."""
        self._forget()
        if self._scope is not None:
            self._seen = _clears[self._scope] = _clears.get(self._scope, 0) + 1

    def _forget(self) -> None:
        self._answers.clear()
        self.bytes = 0
