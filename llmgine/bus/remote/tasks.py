"""What the link's loops share: the errors meaning "Redis is unreachable", ending on cancel."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["NETWORK_ERRORS", "cancel_all", "raise_if_cancelled"]

logger = logging.getLogger(__name__)

NETWORK_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
"""The errors after which the link reconnects with backoff."""


def raise_if_cancelled() -> None:
    """End the running loop if its task was cancelled.

    redis-py may swallow the ``CancelledError`` of a read it was in (it then drops the
    connection); the link's loops call this each turn so a cancel still ends them.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them, bounded: a task that will not end is logged."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, stuck = await asyncio.wait(tasks, timeout=5)
    for task in stuck:
        logger.error("The shared bus's task %s did not end when cancelled.", task.get_name())
