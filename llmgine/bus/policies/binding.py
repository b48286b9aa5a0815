"""What a policy gets from the bus it is added to: where its events go, how to run a command."""

from __future__ import annotations

from llmgine.bus.surface import BusSurface
from llmgine.errors import ConfigurationError
from llmgine.messages.events import Event

__all__ = ["Bound"]


class Bound:
    """The base of a policy: ``bus.add_middleware`` calls :meth:`bind` with the bus.

    A policy belongs to one bus (its events go there); one not added to a bus (its
    ``__call__`` used by hand) publishes nothing.
    """

    bus: BusSurface | None = None

    def bind(self, bus: BusSurface) -> None:
        """Belong to ``bus``; called by ``bus.add_middleware``."""
        if self.bus is not None and self.bus is not bus:
            raise ConfigurationError(
                f"{type(self).__name__} is already on another bus; make one per bus."
            )
        self.bus = bus

    async def publish(self, event: Event) -> None:
        """Publish ``event`` on the bus, if the policy is on one."""
        if self.bus is not None:
            await self.bus.publish(event)
