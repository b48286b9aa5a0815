"""The chat panel's choice of conversation: the engine's stored ones in a list, and New."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

__all__ = ["ConversationPicker"]


class ConversationPicker(widgets.HBox):
    """A dropdown of conversations and a New button; choosing one calls ``on_pick(id)``.

    Args:
        current: The conversation shown at first.
        on_pick: Called with the id a person chose in the list.
        on_new: Called when New is clicked.
    """

    def __init__(
        self, current: str, on_pick: Callable[[str], Any], on_new: Callable[[], Any]
    ) -> None:
        self.dropdown = widgets.Dropdown(
            options=[current], value=current, description="conversation"
        )
        self.new_button = widgets.Button(description="New", tooltip="start a new conversation")
        self._on_pick = on_pick
        self._showing = False  # options set by code are not a person's choice
        self.dropdown.observe(self._picked, names="value")
        self.new_button.on_click(lambda _: on_new())
        super().__init__([self.dropdown, self.new_button])

    @property
    def options(self) -> list[str]:
        """The conversation ids offered, as shown."""
        return [str(option) for option in self.dropdown.options]

    def show(self, ids: list[str], current: str) -> None:
        """Offer ``ids`` (newest first) and ``current``, with ``current`` chosen."""
        self._showing = True
        try:
            self.dropdown.options = list(dict.fromkeys([*ids, current]))
            self.dropdown.value = current
        finally:
            self._showing = False

    def _picked(self, change: dict[str, Any]) -> None:
        if not self._showing and change["new"] is not None:
            self._on_pick(str(change["new"]))
