"""Bounded streams: trim up to what every live consumer group has read and acknowledged."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from redis.exceptions import ResponseError

from llmgine.bus.remote.connection import Connection
from llmgine.bus.remote.listeners import Announcement
from llmgine.bus.remote.wire import entry_order

__all__ = ["trim"]

logger = logging.getLogger(__name__)


async def trim(conn: Connection, command_types: Iterable[str]) -> None:
    """Trim the events stream and the streams of ``command_types`` (handled here).

    Groups of processes whose heartbeat expired (killed ones) are removed first, and
    so are their announcements of the event types they handled.
    """
    await _forget_gone(conn)
    await _trim(conn, conn.keys.events, drop_dead=True)
    for key in command_types:
        await _trim(conn, conn.keys.command(key), drop_dead=False)


async def _forget_gone(conn: Connection) -> None:
    now = time.time()
    gone = []
    for process_id, payload in (await conn.redis.hgetall(conn.keys.listeners)).items():
        announcement = Announcement.load(payload)
        if announcement is None or announcement.until < now:
            gone.append(process_id)
    if gone:
        await conn.redis.hdel(conn.keys.listeners, *gone)


async def _trim(conn: Connection, stream: str, *, drop_dead: bool) -> None:
    redis = conn.redis
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return  # no such stream yet
    floor: bytes | None = None
    for group in groups:
        name = group["name"].decode()
        if (
            drop_dead
            and name.startswith("p:")
            and not await redis.exists(conn.keys.process(name[2:]))
        ):
            await redis.xgroup_destroy(stream, name)
            logger.info("Removed the consumer group of a dead process (%s).", name[2:])
            continue
        mark = group["last-delivered-id"]
        if group["pending"]:
            pending = await redis.xpending(stream, name)
            mark = pending["min"] or mark  # None when acknowledged meanwhile
        if floor is None or entry_order(mark) < entry_order(floor):
            floor = mark
    if floor is None:
        await redis.xtrim(stream, maxlen=0, approximate=False)
    elif floor != b"0-0":
        await redis.xtrim(stream, minid=floor, approximate=False)
