"""Ticket commands."""

from __future__ import annotations

from llmgine import Command


class OpenTicketCommand(Command):
    """A customer writes in."""

    customer: str
    text: str


class TriageTicketCommand(Command):
    """Decide a ticket's category and priority."""

    ticket_id: int


class AnswerTicketCommand(Command):
    """Draft an answer to a ticket with the LLM and the FAQ."""

    ticket_id: int
