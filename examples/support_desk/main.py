"""Run a short support-desk scenario: open tickets, let triage happen, answer them."""

from __future__ import annotations

import asyncio

from support_desk.bootstrap import App, bootstrap
from support_desk.commands import AnswerTicketCommand, OpenTicketCommand

SCENARIO = [
    ("ann", "I was charged twice, please refund one invoice"),
    ("bob", "URGENT: my account is locked and I cannot login"),
    ("cy", "Where is my parcel? The tracking link does not work"),
    ("dee", "Do you have gift cards?"),
    ("eve", "   "),
]


async def run(app: App) -> list[str]:
    """Open every ticket of the scenario and answer those that triage could handle."""
    async with app.bus:
        for customer, text in SCENARIO:
            await app.bus.execute(OpenTicketCommand(customer=customer, text=text))
        await app.bus.wait_for_events()  # triage runs from the TicketOpenedEvents
        for ticket in app.store.all():
            if ticket.category is not None:
                await app.bus.execute(AnswerTicketCommand(ticket_id=ticket.id))
    return [
        f"#{t.id} {t.customer:<4} {t.category or 'untriaged':<9} {t.priority or '-':<6} "
        f"{t.answer or '(no answer: triage failed)'}"
        for t in app.store.all()
    ]


def main() -> None:
    """Run the scenario and print the tickets and the log's path."""
    app = bootstrap()
    for line in asyncio.run(run(app)):
        print(line)
    print(f"\nlog: {app.bus.log_path}")


if __name__ == "__main__":
    main()
