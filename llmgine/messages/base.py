"""The base of every message on the bus."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, SafeUUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["BASE_FIELDS", "Message", "as_utc", "new_id", "utc_now"]


_VERSION_BITS = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_VERSION_4 = (4 << 76) | (0x8000 << 48)
_UNKNOWN = SafeUUID.unknown  # read once: an enum member costs ~3k instructions a read in 3.11
_new_object = object.__new__
_random_bits = random.getrandbits
_UUID_SLOTS: Any = vars(UUID)
_set_int = _UUID_SLOTS["int"].__set__  # the slots' own setters: UUID.__setattr__ refuses
_set_is_safe = _UUID_SLOTS["is_safe"].__set__


def new_id() -> UUID:
    """Return a random (version 4) UUID for a message.

    Built from ``random.getrandbits``: unique, not unguessable, and 3x cheaper than
    ``uuid.uuid4()``, which matters on the bus's hot path (every message has one).
    The same value as ``UUID(int=random.getrandbits(128), version=4)``, set the way
    ``UUID.__init__`` sets it, without that constructor's argument checks.
    """
    value = _new_object(UUID)
    _set_int(value, (_random_bits(128) & _VERSION_BITS) | _VERSION_4)
    _set_is_safe(value, _UNKNOWN)
    return value


def utc_now() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; a naive datetime is taken as local time."""
    return value.astimezone(UTC)


class Message(BaseModel):
    """Fields every command and event carries.

    Subclasses add their own fields; construct them with keyword arguments.
    A field JSON cannot hold is still allowed: the log writes it as its ``repr``.
    """

    model_config = ConfigDict(
        arbitrary_types_allowed=True, extra="forbid", use_attribute_docstrings=True
    )

    id: UUID = Field(default_factory=new_id)
    """Unique id of this message."""
    timestamp: datetime = Field(default_factory=utc_now)
    """When the message was created, timezone-aware UTC."""
    session_id: str = "global"
    """The session the message belongs to; stamped by ``bus.session(...)``."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free-form extra information, written to the log as is."""

    def _repr_html_(self) -> str:
        from llmgine._html import table

        fields = [(name, getattr(self, name)) for name in type(self).model_fields]
        return table(type(self).__name__, fields)

    @field_validator("timestamp")
    @classmethod
    def _timestamp_in_utc(cls, value: datetime) -> datetime:
        return value if value.tzinfo is UTC else as_utc(value)


BASE_FIELDS: set[str] = set(Message.model_fields)
"""Names of the fields every message has; the log writes them in its envelope."""
