"""A worker's claims on the commands it runs, renewed from a thread of its own.

An async handler that blocks the event loop (``time.sleep``, heavy CPU work) stops
the heartbeat: without this thread the worker's claims would lapse after
``claim_after`` and another worker would run the command again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from llmgine.bus.remote.connection import Connection
from llmgine.bus.remote.keys import WORKERS

__all__ = ["ClaimKeeper"]

logger = logging.getLogger(__name__)


class ClaimKeeper:
    """A thread that renews a worker's claims, whatever its event loop does.

    Each heartbeat, while commands run here, it renews their claims and this
    process's adverts (so callers do not take it for gone) over a small sync client
    of its own; and it notices when the loop answers late, which the loop then logs
    as a warning. Started with the first command run here; stopped once the runner
    drained.

    Args:
        conn: The connection to the shared bus (who we are, the heartbeat).
        claims: The entries running here (stream, entry id) and the keys of this
            process's adverts; called from the thread.
        server_ms: The Redis server's clock now, in ms.
        closing: Set once this process leaves: its adverts are not renewed then.
        connect: Makes the thread's sync Redis client.
    """

    def __init__(
        self,
        conn: Connection,
        claims: Callable[[], tuple[list[tuple[str, bytes]], list[str]]],
        server_ms: Callable[[], int],
        closing: threading.Event,
        connect: Callable[[], Any],
    ) -> None:
        self._conn = conn
        self._claims = claims
        self._server_ms = server_ms
        self._closing = closing
        self._connect = connect
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._probe_sent: float | None = None
        self._thread = threading.Thread(
            target=self._serve, name="llmgine-redis-claims", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        heartbeat, process_id = self._conn.heartbeat, self._conn.process_id
        client = self._connect()
        try:
            while not self._stop.wait(heartbeat):
                self._probe()
                claims, adverts = self._claims()
                if not claims:
                    continue
                by_stream: dict[str, list[bytes]] = {}
                for stream, entry_id in claims:
                    by_stream.setdefault(stream, []).append(entry_id)
                expiry = self._server_ms() / 1000 + 3 * heartbeat
                pipe: Any = client.pipeline(transaction=False)
                for stream, ids in by_stream.items():
                    pipe.xclaim(stream, WORKERS, process_id, 0, ids, justid=True)
                for key in () if self._closing.is_set() else adverts:  # withdrawn when closing
                    pipe.zadd(key, {process_id: expiry})
                try:
                    pipe.execute(raise_on_error=False)
                except (RedisError, OSError) as exc:  # the loop's own heartbeat says it
                    logger.debug("Could not renew the claims from their thread: %r", exc)
        finally:
            client.close()

    def _probe(self) -> None:
        """Ask the loop to say how late it answers (one question at a time)."""
        if self._probe_sent is not None:
            return
        self._probe_sent = time.monotonic()
        with contextlib.suppress(RuntimeError):  # the loop closed
            self._loop.call_soon_threadsafe(self._answered)

    def _answered(self) -> None:
        sent, self._probe_sent = self._probe_sent, None
        late = time.monotonic() - sent if sent is not None else 0.0
        if late > self._conn.heartbeat:
            logger.warning(
                "This worker's event loop was blocked for %.1f s (longer than a heartbeat): "
                "a handler blocks it (an async handler calling time.sleep, or heavy work); "
                "make it await, or a sync handler (it runs in a thread). Its commands kept "
                "their claims meanwhile, but the process could not take or answer others.",
                late,
            )

    async def stop(self) -> None:
        """Stop the thread (it ends within a heartbeat)."""
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 10)
