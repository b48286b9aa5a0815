"""Ticket events."""

from __future__ import annotations

from llmgine import Event


class TicketOpenedEvent(Event):
    """A ticket was opened."""

    ticket_id: int
    customer: str


class TicketTriagedEvent(Event):
    """A ticket was given a category and a priority."""

    ticket_id: int
    category: str
    priority: str


class TicketAnsweredEvent(Event):
    """An answer was drafted for a ticket."""

    ticket_id: int
    answer: str
