"""What the desk can be asked to do."""

from support_desk.commands.tickets import (
    AnswerTicketCommand,
    OpenTicketCommand,
    TriageTicketCommand,
)

__all__ = ["AnswerTicketCommand", "OpenTicketCommand", "TriageTicketCommand"]
