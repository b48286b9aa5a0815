"""The one place where the desk is wired: dependencies built and injected, handlers registered."""

from __future__ import annotations

from dataclasses import dataclass

from llmgine import LLMEngine, MessageBus
from support_desk.commands import AnswerTicketCommand, OpenTicketCommand, TriageTicketCommand
from support_desk.config import Config
from support_desk.events import TicketOpenedEvent, TicketTriagedEvent
from support_desk.handlers import TicketHandlers
from support_desk.services import TicketStore, search_faq


@dataclass
class App:
    """A wired support desk."""

    bus: MessageBus
    engine: LLMEngine
    store: TicketStore


def bootstrap(bus: MessageBus | None = None, config: Config | None = None) -> App:
    """Build the desk on ``bus`` (a new one from ``config`` when ``None``)."""
    config = config or Config.from_env()
    if bus is None:
        bus = MessageBus(
            log_dir=config.log_dir, enable_console_metrics=False, enable_console_traces=False
        )
    store = TicketStore()
    engine = LLMEngine(
        bus,
        model=config.model,
        system_prompt="You are a friendly support agent. Answer in two sentences.",
        tools=[search_faq],
    )
    handlers = TicketHandlers(bus=bus, store=store, engine=engine)
    bus.register_command_handler(OpenTicketCommand, handlers.open_ticket)
    bus.register_command_handler(TriageTicketCommand, handlers.triage_ticket)
    bus.register_command_handler(AnswerTicketCommand, handlers.answer_ticket)
    bus.register_event_handler(TicketOpenedEvent, handlers.on_ticket_opened)
    bus.register_event_handler(TicketTriagedEvent, handlers.on_ticket_triaged)
    return App(bus=bus, engine=engine, store=store)
