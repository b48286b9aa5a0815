"""The names of everything a shared bus keeps in Redis, under one namespace.

``{ns}:events``                     one stream of the events some other process handles,
                                    and the processes' notices; a consumer group per process
``{ns}:cmd:{type}``                 one stream per command type; one group, ``workers``
``{ns}:handlers:{type}``            sorted set: processes handling a command type, scored by expiry
``{ns}:listeners``                  hash: process id -> the event types it handles (and until when)
``{ns}:process:{id}``               a process's heartbeat (expires when it dies)
``{ns}:reply:{id}``                 the results sent back to one calling process
``{ns}:result:{request id}``        the reply to one execute() call (or its abandon), so it
                                    never runs twice
``{ns}:sent:{id}``                  hash: a process's last batch of events (its number, last id),
                                    so a batch sent again after a lost reply is not added twice
``{ns}:epoch``                      a token set once per data set: when it changes or is gone,
                                    Redis lost its data (a restart without persistence)
"""

from __future__ import annotations

from dataclasses import dataclass

from llmgine._urls import redact_url as redact  # re-exported: the link's logs and reprs
from llmgine.messages.base import Message

__all__ = ["Keys", "redact", "type_key"]

WORKERS = "workers"
"""The consumer group every command stream has: the processes that handle it share it."""


def type_key(cls: type[Message]) -> str:
    """Name a message class across processes: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis keys of one namespace."""

    namespace: str

    @property
    def events(self) -> str:
        """The stream every process publishes its events to."""
        return f"{self.namespace}:events"

    def command(self, key: str) -> str:
        """The stream of one command type."""
        return f"{self.namespace}:cmd:{key}"

    def handlers(self, key: str) -> str:
        """The processes that handle one command type, scored by the expiry of their claim."""
        return f"{self.namespace}:handlers:{key}"

    @property
    def listeners(self) -> str:
        """The hash of the event types each connected process handles."""
        return f"{self.namespace}:listeners"

    @property
    def epoch(self) -> str:
        """The token that tells whether Redis still holds the data the processes wrote."""
        return f"{self.namespace}:epoch"

    def process(self, process_id: str) -> str:
        """A process's heartbeat key."""
        return f"{self.namespace}:process:{process_id}"

    def sent(self, process_id: str) -> str:
        """A process's last batch of events added to the stream: its number and last id."""
        return f"{self.namespace}:sent:{process_id}"

    def reply(self, process_id: str) -> str:
        """The stream of results sent back to one process."""
        return f"{self.namespace}:reply:{process_id}"

    def result(self, request: str) -> str:
        """The recorded reply of a finished (or abandoned) request: one ``execute()`` call."""
        return f"{self.namespace}:result:{request}"

    @staticmethod
    def event_group(process_id: str) -> str:
        """The consumer group of one process on the events stream."""
        return f"p:{process_id}"
