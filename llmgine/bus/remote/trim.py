"""Bounded streams: trim up to what every live consumer group has read and acknowledged."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from redis.exceptions import ResponseError

from llmgine.bus.remote.listeners import Announcement
from llmgine.bus.remote.wire import entry_order

if TYPE_CHECKING:
    from llmgine.bus.remote.link import RedisLink

__all__ = ["trim"]

logger = logging.getLogger(__name__)


async def trim(link: RedisLink) -> None:
    """Trim the events stream and the command streams handled by ``link``'s process.

    Groups of processes whose heartbeat expired (killed ones) are removed first, and
    so are their announcements of the event types they handled.
    """
    await _forget_gone(link)
    await _trim(link, link.keys.events, drop_dead=True)
    for key in link.local_command_types():
        await _trim(link, link.keys.command(key), drop_dead=False)


async def _forget_gone(link: RedisLink) -> None:
    now = time.time()
    gone = []
    for process_id, payload in (await link.redis.hgetall(link.keys.listeners)).items():
        announcement = Announcement.load(payload)
        if announcement is None or announcement.until < now:
            gone.append(process_id)
    if gone:
        await link.redis.hdel(link.keys.listeners, *gone)


async def _trim(link: RedisLink, stream: str, *, drop_dead: bool) -> None:
    redis = link.redis
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
            and not await redis.exists(link.keys.process(name[2:]))
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
