"""Tickets: an in-memory store and the triage rules."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Ticket:
    """One customer request."""

    id: int
    customer: str
    text: str
    category: str | None = None
    priority: str | None = None
    answer: str | None = None


class TicketStore:
    """Tickets by id (a real app would use a database here)."""

    def __init__(self) -> None:
        self._tickets: dict[int, Ticket] = {}

    def add(self, customer: str, text: str) -> Ticket:
        """Store a new ticket and return it."""
        ticket = Ticket(id=len(self._tickets) + 1, customer=customer, text=text)
        self._tickets[ticket.id] = ticket
        return ticket

    def get(self, ticket_id: int) -> Ticket:
        """The ticket with this id; a clear error if there is none."""
        if ticket_id not in self._tickets:
            raise KeyError(f"no ticket {ticket_id}")
        return self._tickets[ticket_id]

    def all(self) -> list[Ticket]:
        """Every ticket, oldest first."""
        return list(self._tickets.values())


_CATEGORIES = {
    "billing": ("invoice", "refund", "charge", "price", "payment"),
    "access": ("password", "login", "locked", "account"),
    "shipping": ("delivery", "parcel", "shipping", "tracking"),
}


def triage(text: str) -> tuple[str, str]:
    """Return ``(category, priority)`` for a ticket's text, by simple rules."""
    if not text.strip():
        raise ValueError("an empty ticket cannot be triaged")
    lowered = text.lower()
    category = next(
        (name for name, words in _CATEGORIES.items() if any(w in lowered for w in words)), "other"
    )
    priority = "high" if any(w in lowered for w in ("urgent", "asap", "locked")) else "normal"
    return category, priority
