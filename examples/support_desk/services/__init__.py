"""Business logic that knows nothing of the bus."""

from support_desk.services.faq import search_faq
from support_desk.services.tickets import Ticket, TicketStore, triage

__all__ = ["Ticket", "TicketStore", "search_faq", "triage"]
