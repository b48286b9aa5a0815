"""Which waits a server asks for (``Retry-After``) are honoured: none that no client would make."""

from __future__ import annotations

__all__ = ["LONGEST_RETRY_AFTER", "honoured"]

LONGEST_RETRY_AFTER = 86_400.0
"""Seconds of ``Retry-After`` honoured at most: a longer wait (``inf``, a year) is unknown."""


def honoured(asked: float | None) -> float | None:
    """The server's ``Retry-After`` in seconds, or ``None`` when absurd (``inf``, ``nan``, days).

    A wait no client would make is taken as not given, both in an error's text and in
    the retry's wait (the backoff then), so no message says "wait inf s" and no retry
    sleeps forever.
    """
    if asked is None or not 0.0 <= asked <= LONGEST_RETRY_AFTER:
        return None
    return asked
