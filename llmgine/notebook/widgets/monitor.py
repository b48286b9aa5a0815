"""BusMonitor: a live table of the events on a bus, with counts, a filter and pause."""

from __future__ import annotations

import html
from collections import Counter, deque
from typing import Any

import ipywidgets as widgets

from llmgine.bus.bus import MessageBus
from llmgine.messages.base import BASE_FIELDS
from llmgine.messages.events import Event
from llmgine.notebook.sync import call_later

__all__ = ["BusMonitor"]

ALL = "(all types)"
_KINDS = {"TraceEvent": "span", "MetricEvent": "metric"}


def _payload(event: Event, width: int = 90) -> str:
    text = event.model_dump_json(exclude=BASE_FIELDS, fallback=repr)
    return text if len(text) <= width else text[: width - 1] + "…"


class BusMonitor(widgets.VBox):
    """The last events on a bus, live: time, kind, type, session and a short payload.

    It subscribes to every event as an ordinary handler, so the table updates
    whenever the bus handles events (in a notebook: while the kernel is idle).
    Methods: :meth:`set_filter`, :meth:`pause`, :meth:`resume`, :meth:`refresh`,
    :meth:`rebind` (another bus), :meth:`close` (which unsubscribes).

    Args:
        bus: The bus to watch.
        max_rows: Rows shown.
        keep: Events remembered (the filter looks through these).
    """

    def __init__(self, bus: MessageBus, *, max_rows: int = 20, keep: int = 1000) -> None:
        self.bus = bus
        self.max_rows = max_rows
        self.rows: deque[dict[str, str]] = deque(maxlen=keep)
        self.counts: Counter[str] = Counter()
        self.skipped = 0
        self.paused = False
        self.type_filter: str | None = None
        self.filter = widgets.Dropdown(options=[ALL], value=ALL, description="type")
        self.pause_button = widgets.ToggleButton(description="Pause", value=False)
        self.summary = widgets.HTML()
        self.table = widgets.HTML()
        self.filter.observe(self._on_filter, names="value")
        self.pause_button.observe(self._on_pause, names="value")
        super().__init__([widgets.HBox([self.filter, self.pause_button]), self.summary, self.table])
        self.add_class("llmgine-monitor")
        self._render_pending = False

        def on_event(event: Event) -> None:  # a closure: each monitor its own handler
            self.record(event)

        self._handler = on_event
        bus.register_event_handler(Event, on_event)
        self.refresh()

    def __repr__(self) -> str:
        return f"BusMonitor(max_rows={self.max_rows})"

    # ---------------------------------------------------------------- actions

    def set_filter(self, type_name: str | None) -> None:
        """Show only events of ``type_name`` (``None``: every type)."""
        if type_name is not None and type_name not in self.filter.options:
            self.filter.options = (*self.filter.options, type_name)
        self.filter.value = type_name or ALL

    def pause(self) -> None:
        """Stop recording events (they are counted as skipped) until :meth:`resume`."""
        self.pause_button.value = True

    def resume(self) -> None:
        """Record events again."""
        self.pause_button.value = False

    def rebind(self, bus: MessageBus) -> None:
        """Watch ``bus`` from now on (unsubscribing from the one before); the rows stay."""
        self.bus.unregister_event_handler(Event, self._handler)
        self.bus = bus
        bus.register_event_handler(Event, self._handler)

    def close(self) -> None:
        """Unsubscribe from the bus and close the widget."""
        self.bus.unregister_event_handler(Event, self._handler)
        super().close()

    def visible_rows(self) -> list[dict[str, str]]:
        """The rows the table shows now, newest last."""
        rows = [r for r in self.rows if self.type_filter in (None, r["type"])]
        return rows[-self.max_rows :]

    def record(self, event: Event) -> None:
        """Add one event (what the bus subscription calls)."""
        if self.paused:
            self.skipped += 1
            return
        name = type(event).__name__
        self.counts[name] += 1
        self.rows.append(
            {
                "time": event.timestamp.strftime("%H:%M:%S.%f")[:-3],
                "kind": _KINDS.get(name, "event"),
                "type": name,
                "session": event.session_id,
                "payload": _payload(event),
            }
        )
        if name not in self.filter.options:
            self.filter.options = (*self.filter.options, name)
        self._schedule_render()

    def refresh(self) -> None:
        """Redraw the table and the counts now."""
        self._render_pending = False
        counts = ", ".join(f"{name}: {n}" for name, n in self.counts.most_common())
        state = f" — <b>paused</b> ({self.skipped} skipped)" if self.paused else ""
        total = sum(self.counts.values())
        self.summary.value = f"<small>{total} events{state}. {html.escape(counts)}</small>"
        cell = "<td style='white-space:nowrap;padding:1px 8px 1px 0'>{}</td>"
        payload = (
            "<td style='white-space:nowrap;overflow:hidden;text-overflow:ellipsis;"
            "max-width:560px;padding:1px 0'>{}</td>"
        )
        cells = "".join(
            "<tr>"
            + "".join(
                (payload if k == "payload" else cell).format(html.escape(row[k])) for k in row
            )
            + "</tr>"
            for row in self.visible_rows()
        )
        head = "".join(
            f"<th style='text-align:left'>{k}</th>"
            for k in ("time", "kind", "type", "session", "payload")
        )
        self.table.value = (
            "<table style='font-family:monospace;font-size:12px;border-collapse:collapse'>"
            f"<thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"
        )

    # --------------------------------------------------------------- plumbing

    def _schedule_render(self) -> None:
        # Many events at once redraw once, a moment later.
        if not self._render_pending:
            self._render_pending = True
            call_later(0.1, self.refresh)

    def _on_filter(self, change: dict[str, Any]) -> None:
        self.type_filter = None if change["new"] == ALL else str(change["new"])
        self.refresh()

    def _on_pause(self, change: dict[str, Any]) -> None:
        self.paused = bool(change["new"])
        self.pause_button.description = "Resume" if self.paused else "Pause"
        self.refresh()
