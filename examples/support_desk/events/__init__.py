"""What has happened at the desk."""

from support_desk.events.tickets import TicketAnsweredEvent, TicketOpenedEvent, TicketTriagedEvent

__all__ = ["TicketAnsweredEvent", "TicketOpenedEvent", "TicketTriagedEvent"]
