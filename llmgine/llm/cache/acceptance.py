"""Which answers the call cache may keep: those the running prompt accepts.

A prompt with an ``output_type`` accepts an answer only when it validates (or asks for
tools); an answer the engine refuses would otherwise be kept, and the same prompt run
again would get it back without asking the model. The prompt's run says what it accepts
with :func:`accepting` around its calls; the cache step asks :func:`accepted` before it
keeps an answer, and passes over a kept answer that is not accepted (one kept by an
older llmgine) to ask the model again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from llmgine.llm.types import Completion

__all__ = ["Accept", "accepted", "accepting"]

Accept = Callable[[Completion], bool]
"""Whether an answer is one the prompt can use."""

_accept: ContextVar[Accept | None] = ContextVar("llmgine_cache_accept", default=None)


@contextmanager
def accepting(check: Accept | None) -> Iterator[None]:
    """Within the block (and the tasks it starts), the cache keeps only answers ``check`` accepts.

    Args:
        check: Whether an answer may be kept; ``None``: every completed answer.
    """
    token = _accept.set(check)
    try:
        yield
    finally:
        _accept.reset(token)


def accepted(completion: Completion) -> bool:
    """Whether the running prompt accepts ``completion`` (outside :func:`accepting`: yes)."""
    check = _accept.get()
    return check is None or check(completion)
