"""``DeadLetters``: keep each command that still fails, to look at and to run again."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from llmgine.bus.middleware import CallNext
from llmgine.bus.policies.binding import Bound
from llmgine.bus.policies.events import DeadLetterEvent
from llmgine.bus.policies.matching import CommandTypes, command_types
from llmgine.bus.shared_store import SharedStore, connected_store
from llmgine.bus.typepath import class_at, type_path
from llmgine.errors import ConfigurationError, DeadLetterNotFoundError
from llmgine.messages.commands import Command, CommandResult
from llmgine.observability.codec import encode

__all__ = ["DeadLetter", "DeadLetters", "kept_letters", "redrive"]

_redriving: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "llmgine_redriving", default=None
)


@dataclass
class DeadLetter:
    """A command that failed after every policy, with the result it failed with."""

    id: str
    command: Command
    result: CommandResult
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    redrive_of: str | None = None
    """The dead letter this one was redriven from, if it was."""

    def __repr__(self) -> str:
        return (
            f"DeadLetter({self.id!r}, {type(self.command).__name__}, "
            f"{self.result.error_type}: {self.result.error})"
        )


class DeadLetters(Bound):
    """Middleware: a command of ``command_type`` that fails is kept as a :class:`DeadLetter`.

    Each is a ``DeadLetterEvent`` in the log and, while the bus is connected to
    Redis, an entry of the namespace's ``dead_letters`` stream too. Add it first (it
    then sees what the retries could not mend). The bus shows them as
    ``bus.dead_letters`` and runs one again with ``await bus.redrive(id)``: the new
    result's ``metadata["redrive_of"]`` names the dead letter; a redrive that succeeds
    removes it, one that fails replaces it.

    Args:
        command_type: The command class (or a tuple of them; subclasses count).
        keep: Dead letters kept here (the oldest go first), and in the Redis stream.
    """

    def __init__(self, command_type: CommandTypes = Command, *, keep: int = 1000) -> None:
        if keep < 1:
            raise ConfigurationError(f"DeadLetters(keep=...) must be 1 or more; got {keep}.")
        self.command_types = command_types(command_type)
        self.keep = keep
        self._letters: dict[str, DeadLetter] = {}
        self._redriving: set[str] = set()

    def __repr__(self) -> str:
        return f"DeadLetters({len(self._letters)} kept)"

    def __len__(self) -> int:
        return len(self._letters)

    @property
    def items(self) -> list[DeadLetter]:
        """The dead letters kept here, oldest first."""
        return list(self._letters.values())

    def get(self, dead_letter_id: str) -> DeadLetter | None:
        """The dead letter ``dead_letter_id`` kept here, if any."""
        return self._letters.get(dead_letter_id)

    async def __call__(self, command: Command, call_next: CallNext) -> CommandResult:
        """Run ``command``; keep it if it fails."""
        redrive_of = _redriving.get()
        if redrive_of is not None:
            _redriving.set(None)  # the commands the handler runs are not redrives
        result = await call_next(command)
        if redrive_of is not None:
            result = result.model_copy(
                update={"metadata": {**result.metadata, "redrive_of": redrive_of}}
            )
            self._letters.pop(redrive_of, None)
        if not result.success and isinstance(command, self.command_types):
            await self._keep(command, result, redrive_of)
        return result

    async def redrive(self, dead_letter_id: str) -> CommandResult:
        """Run a dead letter's command again (a copy with a new id) through the bus.

        A dead letter kept by another process of the shared bus is read from Redis.

        Raises:
            DeadLetterNotFoundError: No dead letter has that id (also a ``LookupError``).
            ConfigurationError: The policy is on no bus.
        """
        if self.bus is None:
            raise ConfigurationError("This DeadLetters is on no bus: bus.add_middleware it first.")
        if dead_letter_id in self._redriving:
            raise DeadLetterNotFoundError(
                f"Dead letter {dead_letter_id!r} is being redriven already; its result says "
                "how that went (a failure is kept as a new dead letter)."
            )
        letter = self._letters.get(dead_letter_id) or await self._shared_letter(dead_letter_id)
        if letter is None:
            raise DeadLetterNotFoundError(
                f"No dead letter {dead_letter_id!r}: see bus.dead_letters for the ids kept."
            )
        again = letter.command.model_copy(update={"id": uuid.uuid4()})
        token = _redriving.set(dead_letter_id)
        self._redriving.add(dead_letter_id)  # claimed: a second redrive meanwhile is refused
        try:
            return await self.bus.execute(again)
        finally:
            self._redriving.discard(dead_letter_id)
            _redriving.reset(token)

    async def _keep(self, command: Command, result: CommandResult, redrive_of: str | None) -> None:
        letter = DeadLetter(uuid.uuid4().hex, command, result, redrive_of=redrive_of)
        await self._share(letter)
        self._letters[letter.id] = letter
        while len(self._letters) > self.keep:
            self._letters.pop(next(iter(self._letters)))
        await self.publish(
            DeadLetterEvent(
                session_id=command.session_id,
                dead_letter_id=letter.id,
                command_id=command.id,
                command_type=type(command).__name__,
                error=result.error,
                error_type=result.error_type,
                redrive_of=redrive_of,
            )
        )

    def _store(self) -> SharedStore | None:
        return connected_store(self.bus, "dead_letters") if self.bus is not None else None

    async def _share(self, letter: DeadLetter) -> None:
        store = self._store()
        if store is None:
            return
        await store.redis.xadd(
            store.prefix,
            {
                b"id": letter.id,
                b"t": type_path(type(letter.command)),
                b"m": encode("command", letter.command, None),
                b"error": letter.result.error or "",
                b"error_type": letter.result.error_type or "",
            },
            maxlen=self.keep,
            approximate=True,
        )

    async def _shared_letter(self, dead_letter_id: str) -> DeadLetter | None:
        store = self._store()
        if store is None:
            return None
        for _entry, fields in await store.redis.xrange(store.prefix):
            if fields.get(b"id", b"").decode() == dead_letter_id:
                return _letter(dead_letter_id, fields)
        return None


def kept_letters(middleware: Iterable[object]) -> list[DeadLetter]:
    """The dead letters of every ``DeadLetters`` among a bus's middleware, oldest first."""
    letters = [m.items for m in middleware if isinstance(m, DeadLetters)]
    return sorted((letter for found in letters for letter in found), key=lambda x: x.at)


async def redrive(middleware: Iterable[object], dead_letter_id: str) -> CommandResult:
    """Redrive ``dead_letter_id`` with the ``DeadLetters`` (of a bus's middleware) that has it.

    Raises:
        ConfigurationError: The bus has no ``DeadLetters`` middleware.
        DeadLetterNotFoundError: None has that dead letter, here or in the shared bus.
    """
    desks = [m for m in middleware if isinstance(m, DeadLetters)]
    if not desks:
        raise ConfigurationError(
            "This bus keeps no dead letters: add the middleware first, "
            "bus.add_middleware(DeadLetters())."
        )
    desk = next((d for d in desks if d.get(dead_letter_id) is not None), desks[0])
    return await desk.redrive(dead_letter_id)


def _letter(dead_letter_id: str, fields: dict[bytes, bytes]) -> DeadLetter:
    from llmgine.bus.remote.wire import load_message  # only with the bus connected

    cls = class_at(fields[b"t"].decode(), Command)
    command, _ = load_message(cls, fields[b"m"])
    result = CommandResult(
        success=False,
        error=fields.get(b"error", b"").decode() or None,
        error_type=fields.get(b"error_type", b"").decode() or None,
        command_id=command.id,
        command_type=cls.__name__,
    )
    return DeadLetter(dead_letter_id, command, result)
