"""Which handler serves which command, and which handlers hear which event."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from llmgine.errors import HandlerAlreadyRegisteredError, HandlerNotFoundError
from llmgine.messages.commands import Command
from llmgine.messages.events import Event

__all__ = ["HandlerEntry", "HandlerRegistry", "Registration", "handler_name"]

Handler = Callable[[Any], Any]


def handler_name(fn: Handler) -> str:
    """Return a readable name for a handler: ``module.qualname`` where it has one."""
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{qualname}" if module else str(qualname)


def _handler_key(fn: Handler) -> Hashable:
    """Identify a handler across re-definitions (a notebook cell run again).

    Functions are known by module and qualified name, so a new definition
    replaces the old one. A bound method is known by its instance too: two
    engines on one bus are two handlers. Lambdas and nested functions have no
    stable name and are known only by identity.
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if module and qualname and "<lambda>" not in qualname and "<locals>" not in qualname:
        instance = getattr(fn, "__self__", None)
        if instance is not None and not isinstance(instance, type):
            return (module, qualname, id(instance))
        return (module, qualname)
    return fn


def _redefines(new: Handler, old: Handler) -> bool:
    """Whether ``new`` is a method of a class defined again (a notebook cell run again).

    Two instances of one class are two handlers; an instance of a class defined
    anew under the same name replaces the instance of the old definition.
    """
    new_self, old_self = getattr(new, "__self__", None), getattr(old, "__self__", None)
    if new_self is None or old_self is None or type(new_self) is type(old_self):
        return False
    return (
        getattr(new, "__module__", None) == getattr(old, "__module__", None)
        and getattr(new, "__qualname__", None) == getattr(old, "__qualname__", None)
        and getattr(new, "__qualname__", None) is not None
    )


def _is_async(fn: Handler) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - a callable object's __call__
    )


@dataclass(frozen=True, slots=True)
class HandlerEntry:
    """A registered handler and what the registry knows of it."""

    fn: Handler
    key: Hashable
    name: str
    is_async: bool
    order: int
    owner: str | None


@dataclass(frozen=True, slots=True)
class Registration:
    """A row of ``MessageBus.registrations()``: one handler for one message type."""

    kind: str
    """``"command"`` or ``"event"``."""
    message_type: type[Command] | type[Event]
    handler: str
    """The handler's ``module.qualname``."""
    session: str | None
    """The session that registered it, or ``None`` for the bus itself."""


class HandlerRegistry:
    """Command handlers (one per type) and event handlers (many, subclass-matched)."""

    def __init__(self) -> None:
        self._commands: dict[type[Command], HandlerEntry] = {}
        self._events: dict[type[Event], list[HandlerEntry]] = {}
        self._cache: dict[type[Event], tuple[HandlerEntry, ...]] = {}
        self._counter = itertools.count()
        # Session registrations: what each replaced, and which were undone (sessions ended).
        self._previous: dict[int, HandlerEntry | None] = {}
        self._retired: set[int] = set()

    def _live_previous(
        self, entry: HandlerEntry, previous: HandlerEntry | None
    ) -> HandlerEntry | None:
        """Undo ``entry``: the registration to put back, skipping those of ended sessions."""
        self._retired.add(id(entry))
        self._previous[id(entry)] = previous
        while previous is not None and id(previous) in self._retired:
            previous = self._previous.get(id(previous))
        return previous

    def _entry(self, fn: Handler, owner: str | None, order: int | None = None) -> HandlerEntry:
        if not callable(fn):
            raise TypeError(f"A handler must be callable; got {type(fn).__name__} {fn!r}.")
        return HandlerEntry(
            fn=fn,
            key=_handler_key(fn),
            name=handler_name(fn),
            is_async=_is_async(fn),
            order=next(self._counter) if order is None else order,
            owner=owner,
        )

    def add_command(
        self, command_type: type[Command], fn: Handler, owner: str | None, *, replace: bool = False
    ) -> tuple[HandlerEntry, HandlerEntry | None]:
        """Register ``fn`` as the handler of ``command_type``.

        Returns the new entry and the one it replaced, if any.
        """
        if not (isinstance(command_type, type) and issubclass(command_type, Command)):
            raise TypeError(
                f"register_command_handler takes a Command subclass; got {command_type!r}."
            )
        entry = self._entry(fn, owner)
        existing = self._commands.get(command_type)
        if (
            existing is not None
            and existing.key != entry.key
            and not replace
            and not _redefines(fn, existing.fn)
        ):
            raise HandlerAlreadyRegisteredError(
                f"{command_type.__name__} already has a handler ({existing.name}); a command "
                f"has exactly one. Call bus.unregister_command_handler({command_type.__name__}) "
                "first, or pass replace=True."
            )
        self._commands[command_type] = entry
        return entry, existing

    def restore_command(
        self, command_type: type[Command], entry: HandlerEntry, previous: HandlerEntry | None
    ) -> None:
        """Undo a registration: remove ``entry`` if it is still there, put ``previous`` back."""
        previous = self._live_previous(entry, previous)
        if self._commands.get(command_type) is not entry:
            return
        if previous is None:
            del self._commands[command_type]
        else:
            self._commands[command_type] = previous

    def command_handler_of(self, command_type: type[Command]) -> Handler | None:
        """Return the handler registered for exactly ``command_type``, if any."""
        entry = self._commands.get(command_type)
        return None if entry is None else entry.fn

    def remove_command(self, command_type: type[Command], owner: str | None = None) -> bool:
        """Remove the handler of ``command_type``; return whether there was one.

        With ``owner``, remove it only if that session registered it.
        """
        entry = self._commands.get(command_type)
        if entry is None or (owner is not None and entry.owner != owner):
            return False
        del self._commands[command_type]
        return True

    def command_handler(self, command_type: type[Command]) -> HandlerEntry:
        """Return the handler of ``command_type``, or raise ``HandlerNotFoundError``."""
        entry = self._commands.get(command_type)
        if entry is None:
            name = f"{command_type.__module__}.{command_type.__qualname__}"
            raise HandlerNotFoundError(
                f"No handler is registered for {command_type.__name__} ({name}). Register one with "
                f"bus.register_command_handler({command_type.__name__}, handler) (for that "
                "class: one of the same name from another module is another type)."
            )
        return entry

    def add_event(
        self, event_type: type[Event], fn: Handler, owner: str | None
    ) -> tuple[HandlerEntry, HandlerEntry | None]:
        """Add ``fn`` to the handlers of ``event_type`` (a re-definition replaces in place).

        Returns the new entry and the one it replaced, if any.
        """
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise TypeError(f"register_event_handler takes an Event subclass; got {event_type!r}.")
        entries = self._events.setdefault(event_type, [])
        key = _handler_key(fn)
        self._cache.clear()
        for i, existing in enumerate(entries):
            if existing.key == key or _redefines(fn, existing.fn):
                entries[i] = self._entry(fn, owner, order=existing.order)
                return entries[i], existing
        entries.append(self._entry(fn, owner))
        return entries[-1], None

    def restore_event(
        self, event_type: type[Event], entry: HandlerEntry, previous: HandlerEntry | None
    ) -> None:
        """Undo a registration: take ``entry`` out if still there, put ``previous`` back."""
        previous = self._live_previous(entry, previous)
        entries = self._events.get(event_type, [])
        for i, existing in enumerate(entries):
            if existing is entry:
                if previous is None:
                    del entries[i]
                else:
                    entries[i] = previous
                self._cache.clear()
                return

    def remove_event(self, event_type: type[Event], fn: Handler) -> bool:
        """Remove ``fn`` from the handlers of ``event_type``; return whether it was there."""
        entries = self._events.get(event_type, [])
        key = _handler_key(fn)
        kept = [e for e in entries if e.key != key]
        if len(kept) == len(entries):
            return False
        self._events[event_type] = kept
        self._cache.clear()
        return True

    @property
    def handler_cache(self) -> dict[type[Event], tuple[HandlerEntry, ...]]:
        """The handlers found so far by event type (read-only; emptied when they change).

        The same dict for the registry's life: a hot path may hold it and look in it,
        and ask :meth:`event_handlers` for a type it lacks.
        """
        return self._cache

    def event_handlers(self, event_type: type[Event]) -> tuple[HandlerEntry, ...]:
        """Return the handlers that hear ``event_type``, in registration order."""
        handlers = self._cache.get(event_type)
        if handlers is None:
            found = [entry for cls in event_type.__mro__ for entry in self._events.get(cls, ())]
            handlers = tuple(sorted(found, key=lambda e: e.order))
            self._cache[event_type] = handlers
        return handlers

    def registrations(self) -> list[Registration]:
        """Return every registration, commands first, in registration order."""
        rows = [
            (e.order, Registration("command", t, e.name, e.owner))
            for t, e in self._commands.items()
        ]
        rows += [
            (e.order, Registration("event", t, e.name, e.owner))
            for t, entries in self._events.items()
            for e in entries
        ]
        rows.sort(key=lambda row: (row[1].kind != "command", row[0]))
        return [row[1] for row in rows]
