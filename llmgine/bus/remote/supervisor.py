"""The link's loops, kept running while Redis goes away and comes back.

Each loop of the link (sending and reading events, taking commands, reading replies,
the heartbeat) runs as a task of its own, in a context of its own. On a network error
the supervisor logs the outage once, backs off, and when Redis answers again lets the
link join again (``rejoin``) before the loop runs on; any other error is logged with
its traceback and the loop starts again.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable

from llmgine.bus.remote.connection import Connection
from llmgine.bus.remote.tasks import NETWORK_ERRORS, cancel_all

__all__ = ["Supervisor"]

logger = logging.getLogger(__name__)


class Supervisor:
    """Runs the link's loops through Redis outages.

    Args:
        conn: The connection to the shared bus.
        rejoin: What to do once Redis answers after an outage (measure the clock again,
            check for a loss of data, make the groups, advertise).
    """

    def __init__(self, conn: Connection, rejoin: Callable[[], Awaitable[None]]) -> None:
        self.conn = conn
        self.rejoin = rejoin
        self._loop = asyncio.get_running_loop()
        self._tasks: list[asyncio.Task[None]] = []
        self._down_since: float | None = None

    def spawn(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run the loop ``body`` as the task ``llmgine-redis-{name}``, through outages."""

        async def run() -> None:
            await self._resilient(name, body)

        task = self._loop.create_task(
            run(), name=f"llmgine-redis-{name}", context=contextvars.Context()
        )
        self._tasks.append(task)

    async def cancel(self, *names: str) -> None:
        """Cancel the loops of these names (all when none is named) and wait for them."""
        if not names:
            await cancel_all(self._tasks)
            return
        suffixes = tuple(f"-{name}" for name in names)
        await cancel_all([t for t in self._tasks if t.get_name().endswith(suffixes)])

    async def _resilient(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run a loop of the link; on a network error log it, back off and run it again."""
        delay = 0.05
        task = asyncio.current_task()
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except NETWORK_ERRORS as exc:
                if task is not None and task.cancelling():
                    # redis-py may turn a cancelled read into a connection error.
                    raise asyncio.CancelledError from exc
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    logger.warning(
                        "Lost the connection to Redis at %s (%s: %s); reconnecting with backoff.",
                        self.conn.where,
                        type(exc).__name__,
                        exc,
                    )
            except Exception:
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None
                logger.exception("The shared bus's %s loop failed; it starts again.", name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            if await self._reconnected():
                delay = 0.05

    async def _reconnected(self) -> bool:
        try:
            await self.conn.redis.ping()
            if self._down_since is not None:
                await self.rejoin()
        except NETWORK_ERRORS:
            return False
        if self._down_since is not None:
            logger.warning(
                "Reconnected to Redis at %s after %.1f s.",
                self.conn.where,
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        return True
