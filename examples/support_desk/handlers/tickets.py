"""The ticket handlers, with their dependencies injected by the bootstrap."""

from __future__ import annotations

from dataclasses import dataclass

from llmgine import LLMEngine, MessageBus, Metric, MetricEvent
from support_desk.commands import AnswerTicketCommand, OpenTicketCommand, TriageTicketCommand
from support_desk.events import TicketAnsweredEvent, TicketOpenedEvent, TicketTriagedEvent
from support_desk.services import TicketStore, triage


@dataclass
class TicketHandlers:
    """Every handler of the desk; ``bootstrap`` registers them on the bus."""

    bus: MessageBus
    store: TicketStore
    engine: LLMEngine

    async def open_ticket(self, command: OpenTicketCommand) -> int:
        """Store the ticket; triage follows from the event."""
        ticket = self.store.add(command.customer, command.text)
        await self.bus.publish(TicketOpenedEvent(ticket_id=ticket.id, customer=ticket.customer))
        return ticket.id

    async def triage_ticket(self, command: TriageTicketCommand) -> str:
        """Categorize the ticket by the rules in services."""
        ticket = self.store.get(command.ticket_id)
        ticket.category, ticket.priority = triage(ticket.text)
        await self.bus.publish(
            TicketTriagedEvent(
                ticket_id=ticket.id, category=ticket.category, priority=ticket.priority
            )
        )
        return ticket.category

    async def answer_ticket(self, command: AnswerTicketCommand) -> str:
        """Ask the LLM for an answer; it calls the FAQ tool named in the prompt."""
        ticket = self.store.get(command.ticket_id)
        prompt = f"Use search_faq with category={ticket.category} to answer: {ticket.text}"
        ticket.answer = await self.engine.chat(prompt, conversation_id=f"ticket-{ticket.id}")
        await self.bus.publish(TicketAnsweredEvent(ticket_id=ticket.id, answer=ticket.answer))
        return ticket.answer

    async def on_ticket_opened(self, event: TicketOpenedEvent) -> None:
        """Every new ticket is triaged at once: an event handler executing a command."""
        await self.bus.execute(TriageTicketCommand(ticket_id=event.ticket_id))

    async def on_ticket_triaged(self, event: TicketTriagedEvent) -> None:
        """Count tickets by category and priority."""
        await self.bus.publish(
            MetricEvent(
                metrics=[
                    Metric(
                        name="tickets_triaged",
                        value=1,
                        tags={"category": event.category, "priority": event.priority},
                    )
                ]
            )
        )
