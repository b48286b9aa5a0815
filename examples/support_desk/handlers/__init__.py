"""Handlers: small functions that turn commands into events, and events into commands."""

from support_desk.handlers.tickets import TicketHandlers

__all__ = ["TicketHandlers"]
