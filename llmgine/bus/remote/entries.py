"""A command's entry on its stream, and the reply recorded for it: what caller and worker share.

The caller adds an entry with these fields to the stream of the command's type:

- ``m``: the command's envelope line; ``r``: the caller's reply stream; ``o``: the
  caller's process id; ``a``: the request id (one per ``execute()`` call);
- ``v``: the version of the caller's announcement of its event handlers;
- ``d`` (with ``execute(timeout=)``): the caller's deadline in ms on the Redis
  server's clock.

The worker records the reply under the request's result key (``SET NX``: once), then
sends it on the reply stream; a caller that stops waiting records :data:`ABANDONED`
there instead, so that no worker runs the command later. The scripts below make each
of these steps one round trip.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic_core import to_json

from llmgine.messages.commands import CommandResult
from llmgine.observability.jsonsafe import safe_repr

__all__ = ["ABANDONED", "FINISH", "REPLY_TTL", "RESULT_TTL", "START", "Entry", "encode_reply"]

ABANDONED = b'{"abandoned":true}'
"""The recorded reply of a command its caller stopped waiting for: never run later."""

RESULT_TTL = 24 * 3600
"""Seconds a request's recorded reply is kept (its idempotency window)."""

REPLY_TTL = 3600
"""Seconds a reply stream lives when its caller is gone (a live caller renews it)."""


# KEYS: the result key, the command stream, the caller's reply stream.
# ARGV: the reply, its TTL, the entry id, the group, the reply stream's TTL, the
# abandoned marker.
FINISH = """
local stored = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
redis.pcall('XACK', KEYS[2], ARGV[4], ARGV[3])
if not stored then
  if redis.call('GET', KEYS[1]) == ARGV[6] then return 3 end
  return 0
end
local sent = redis.pcall('XADD', KEYS[3], '*', 'r', ARGV[1])
if type(sent) == 'table' and sent['err'] then return 2 end
if redis.call('TTL', KEYS[3]) < 0 then redis.call('EXPIRE', KEYS[3], ARGV[5]) end
return 1
"""
"""Record the reply (unless one is), acknowledge the entry, answer: one round trip.

Returns 1, 0 when another run's reply was recorded already, 3 when the caller
abandoned the command, 2 when the entry's reply stream is
not a stream (a foreign entry): its reply is recorded, and dropped."""

# KEYS as FINISH. ARGV: the entry id, the group, the abandoned marker, the deadline in
# ms on the server's clock (0: none), the result's TTL, the reply stream's TTL.
START = """
local recorded = redis.call('GET', KEYS[1])
if recorded then
  redis.pcall('XACK', KEYS[2], ARGV[2], ARGV[1])
  if recorded ~= ARGV[3] then
    redis.pcall('XADD', KEYS[3], '*', 'r', recorded)
    if redis.call('TTL', KEYS[3]) < 0 then redis.pcall('EXPIRE', KEYS[3], ARGV[6]) end
  end
  return 'done'
end
local deadline = tonumber(ARGV[4])
if deadline > 0 then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) >= deadline then
    redis.call('SET', KEYS[1], ARGV[3], 'NX', 'EX', ARGV[5])
    redis.pcall('XACK', KEYS[2], ARGV[2], ARGV[1])
    redis.call('XDEL', KEYS[2], ARGV[1])
    return 'expired'
  end
end
return 'run'
"""
"""For a taken-over entry: send a recorded reply again; drop a command past its deadline."""


def encode_reply(
    request: str,
    command_id: str,
    result: CommandResult,
    tb: str,
    worker: str,
    events_upto: bytes | None,
) -> bytes:
    """The reply's JSON: the result serialized once, straight into the payload.

    ``events_upto`` is the id of the last event this process sent while it ran the
    command (what its handler published), if any.
    """
    fields: dict[str, Any] = {
        "request": request,
        "command_id": command_id,
        "traceback": tb,
        "worker": worker,
    }
    if events_upto is not None:
        fields["events_upto"] = events_upto.decode()
    head = orjson.dumps(fields)
    return b"".join(
        (head[:-1], b',"result":', to_json(result, fallback=safe_repr, inf_nan_mode="null"), b"}")
    )


class Entry:
    """What a command stream's entry says, read without trusting it."""

    __slots__ = ("caller", "deadline", "line", "reply_to", "request", "version")

    def __init__(self, fields: dict[bytes, bytes]) -> None:
        self.line = fields.get(b"m")
        reply_to = fields.get(b"r")
        self.reply_to = reply_to.decode(errors="replace") if reply_to else None
        self.caller = fields.get(b"o", b"").decode(errors="replace")
        self.version = _int(fields.get(b"v"))
        self.deadline = _int(fields.get(b"d"))
        request = fields.get(b"a")
        # An entry of an older version names no request: its command id is the key.
        self.request = request.decode(errors="replace") if request else self.command_id()

    def command_id(self) -> str | None:
        """The command's id, read from the envelope alone (when the command does not decode)."""
        if self.line is None:
            return None
        try:
            raw = orjson.loads(self.line)
        except orjson.JSONDecodeError:
            return None
        found = raw.get("id") if isinstance(raw, dict) else None
        return found if isinstance(found, str) else None


def _int(raw: bytes | None) -> int:
    try:
        return int(raw or 0)
    except ValueError:
        return 0
