"""Reach a Redis server before leaving the shared bus joined now (``%llmgine connect``).

A short-lived client sends one PING: a URL with a typo is found out while the
working link, and the commands it is running, stay as they are.
"""

from __future__ import annotations

import asyncio

from llmgine._urls import redact_url

__all__ = ["CONNECT_TIMEOUT", "reach_redis"]

CONNECT_TIMEOUT = 5.0
"""Seconds Redis is given to answer: ``bus.connect()``'s default ``connect_timeout``."""


async def reach_redis(url: str, connect_timeout: float = CONNECT_TIMEOUT) -> None:
    """Return once the Redis at ``url`` answers a PING; else raise what ``bus.connect()`` would.

    Raises:
        SharedBusConnectionError: Redis cannot be reached at ``url``, or is silent
            past ``connect_timeout`` (also a ``ConnectionError``).
        ConfigurationError: Not a Redis URL, or settings Redis refuses (a database
            it lacks, a wrong password).
    """
    import redis.asyncio as aioredis  # the redis extra: only a connected bus gets here
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from llmgine.bus.remote.clients import close_clients, connect_error, url_error

    try:
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=connect_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as exc:  # redis-py's word on a URL it cannot read, as bus.connect says it
        raise url_error(url, exc) from None
    try:
        async with asyncio.timeout(connect_timeout):
            await client.ping()
    except Exception as exc:
        raise connect_error(exc, redact_url(url), connect_timeout) from None
    finally:
        await close_clients(client)
