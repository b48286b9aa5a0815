"""The link's Redis clients: how they are made and closed, and what a failure to connect means.

No retries inside redis-py: a retried XADD could add a command twice; the link's own
loops reconnect with backoff instead (:mod:`~llmgine.bus.remote.supervisor`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, ResponseError
from redis.retry import Retry

from llmgine._urls import redact_url
from llmgine.bus.remote.tasks import NETWORK_ERRORS
from llmgine.errors import ConfigurationError, SharedBusConnectionError

__all__ = [
    "POOL_SIZE",
    "close_clients",
    "connect_error",
    "open_clients",
    "sync_client",
    "url_error",
]

POOL_SIZE = 32
"""Connections a process opens to Redis at most for its calls (blocking reads apart)."""


def open_clients(url: str, connect_timeout: float) -> tuple[Any, Any]:
    """The client for calls and the client for blocking reads, to the Redis at ``url``.

    ``Any``: redis-py types each reply as a union of its RESP2 and RESP3 shapes; the
    link reads the RESP2 shapes.
    """
    options: dict[str, Any] = {
        "socket_timeout": 30,
        "socket_connect_timeout": connect_timeout,
        "retry": AsyncRetry(NoBackoff(), 0),
    }
    # A bounded pool that makes a call wait for a free connection (within the
    # caller's own timeout) rather than fail: any number of execute() calls at once.
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_SIZE, timeout=None, **options
    )
    calls = aioredis.Redis.from_pool(pool)
    # The blocking reads have connections of their own: cancelling one at close
    # never leaves a half-read reply on a connection the senders use.
    blocking = aioredis.Redis.from_url(url, **options)
    return calls, blocking


def sync_client(url: str, socket_timeout: float, connect_timeout: float) -> Any:
    """A small sync client (for a thread of the link's own)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
    )


async def close_clients(*clients: Any) -> None:
    """Close ``clients``, a second each at most, whatever their state."""
    for client in clients:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await client.aclose()


def url_error(url: str, exc: ValueError) -> ConfigurationError:
    """The error for a URL redis-py cannot read (``exc``), the URL's secrets hidden."""
    return ConfigurationError(
        f"Not a Redis URL: {redact_url(url)} ({type(exc).__name__}); expected "
        "redis://[[user]:password@]host[:port][/db], rediss://... or unix://... (in a "
        "password, write # / ? @ as %23 %2F %3F %40)"
    )


def _said(exc: Exception) -> str:
    """What ``exc`` says, without the full stop Redis ends its messages with (ours follows)."""
    return str(exc).rstrip(". ")


def connect_error(exc: Exception, where: str, connect_timeout: float) -> Exception:
    """What ``bus.connect()`` raises for ``exc``: a clear llmgine error, or ``exc`` itself.

    Args:
        exc: What joining the shared bus raised.
        where: The Redis URL, its secrets hidden.
        connect_timeout: The seconds Redis was given to answer.
    """
    if isinstance(exc, TimeoutError):
        return SharedBusConnectionError(
            f"Redis at {where} did not answer within {connect_timeout:g} s "
            "(connect_timeout): is it the right host and port, and is the server "
            "running and not stalled?"
        )
    if isinstance(exc, AuthenticationError | AuthorizationError):
        return ConfigurationError(
            f"Redis at {where} refused this client: {_said(exc)}. Check the user and password "
            "in the URL (redis://user:password@host:port/db)."
        )
    if isinstance(exc, NETWORK_ERRORS):
        return SharedBusConnectionError(
            f"Cannot reach Redis at {where} ({type(exc).__name__}: {_said(exc)}); is the server "
            "running? (RedisServer() starts a local one.)"
        )
    if isinstance(exc, ResponseError):
        return ConfigurationError(
            f"Redis at {where} refused the connection's settings: {_said(exc)}. Check the URL "
            "(the database index after the port must exist on the server, 0-15 by default)."
        )
    return exc
