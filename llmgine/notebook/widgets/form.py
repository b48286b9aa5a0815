"""CommandForm: inputs generated from a Command's fields, an Execute button, the result."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import html
import json
import logging
import types
import typing
from typing import Any, Literal, get_args, get_origin

import ipywidgets as widgets
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from llmgine._validation import validation_problems
from llmgine.bus.bus import MessageBus
from llmgine.messages.base import BASE_FIELDS
from llmgine.messages.commands import Command, CommandResult
from llmgine.notebook.sync import spawn

__all__ = ["CommandForm"]

logger = logging.getLogger(__name__)

_MISSING = ""


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _input(name: str, field: FieldInfo) -> widgets.Widget:
    annotation, optional = _unwrap_optional(field.annotation)
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    common: dict[str, Any] = {"description": name, "tooltip": field.description or name}
    common["style"] = {"description_width": "initial"}
    if get_origin(annotation) is Literal:
        return widgets.Dropdown(options=list(get_args(annotation)), value=default, **common)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        options = [(member.name, member) for member in annotation]
        return widgets.Dropdown(options=options, value=default, **common)
    if annotation is bool and not optional:
        return widgets.Checkbox(value=bool(default), **common)
    # A required number gets a text box (left empty: "Field required"), never a silent 0.
    if annotation is int and not optional and default is not None:
        return widgets.IntText(value=default, **common)
    if annotation is float and not optional and default is not None:
        return widgets.FloatText(value=default, **common)
    placeholder = "" if default is None else str(default)
    if default is not None and not isinstance(default, str):
        placeholder = json.dumps(default, default=str)
    if annotation is str and name in ("prompt", "text", "body", "content"):
        return widgets.Textarea(value=default or "", placeholder=placeholder, **common)
    value = default if isinstance(default, str) else _MISSING
    hint = placeholder or ("optional" if optional or not field.is_required() else "required")
    return widgets.Text(value=value, placeholder=hint, **common)


class CommandForm(widgets.VBox):
    """A form for one Command class: fill the fields, Execute, see the result.

    Inputs come from the command's pydantic fields: text, numbers, checkboxes,
    and dropdowns for ``Literal``/``Enum``; defaults are filled in and field
    descriptions are tooltips. Text left empty takes the field's default; text
    for lists and dicts is read as JSON. A required number with no default is a
    text box, so one left empty is refused rather than sent as 0. Validation
    errors show under the form; clicked again before a run ends, only the latest
    run's result is shown.
    Methods: :meth:`execute`, :meth:`values`, :meth:`rebind` (another bus).

    Args:
        command_type: The Command subclass to build.
        bus: The bus that executes it.
    """

    def __init__(self, command_type: type[Command], bus: MessageBus) -> None:
        if not (isinstance(command_type, type) and issubclass(command_type, Command)):
            raise TypeError(f"CommandForm needs a Command class; got {command_type!r}.")
        self.command_type = command_type
        self.bus = bus
        self.fields = {
            name: _input(name, field)
            for name, field in command_type.model_fields.items()
            if name not in BASE_FIELDS
        }
        self.execute_button = widgets.Button(description="Execute", button_style="primary")
        self.execute_button.on_click(lambda _: self.execute())
        self.errors = widgets.HTML()
        self.output = widgets.HTML()
        self.result: CommandResult | None = None
        self._runs = 0  # Execute's clicks so far: only the latest run's result is shown
        title = widgets.HTML(f"<b>{html.escape(command_type.__name__)}</b>")
        super().__init__(
            [title, *self.fields.values(), self.execute_button, self.errors, self.output]
        )
        self.add_class("llmgine-form")

    def __repr__(self) -> str:
        return f"CommandForm({self.command_type.__name__})"

    def rebind(self, bus: MessageBus) -> None:
        """Execute on ``bus`` from now on (``%llmgine start`` made a new default bus)."""
        self.bus = bus

    def values(self) -> dict[str, Any]:
        """The field values as entered; empty text is left out (the default applies)."""
        values: dict[str, Any] = {}
        for name, widget in self.fields.items():
            value = widget.value
            if isinstance(widget, widgets.Text) and value == _MISSING:
                continue
            if isinstance(widget, widgets.Text) and value[:1] in ("[", "{"):
                with contextlib.suppress(ValueError):  # if not JSON, pydantic says what is wrong
                    value = json.loads(value)
            values[name] = value
        return values

    def execute(self) -> asyncio.Future[CommandResult | None] | None:
        """Validate the fields and execute the command; returns the task, or ``None`` if invalid."""
        try:
            command = self.command_type(**self.values())
        except ValidationError as exc:
            problems = "".join(
                f"<li><b>{html.escape(where)}</b>: {html.escape(message)}</li>"
                for where, message in validation_problems(exc, whole=self.command_type.__name__)
            )
            self.errors.value = f"<ul style='color:#b00020'>{problems}</ul>"
            return None
        self.errors.value = ""
        self.output.value = "<i>running…</i>"
        self._runs += 1
        return spawn(self._run(command, self._runs), loop=self.bus.loop)

    async def _run(self, command: Command, run: int) -> CommandResult | None:
        try:
            result = await self.bus.execute(command)
        except Exception as exc:  # no handler, a stopped bus: say so instead of "running…"
            logger.info("%s could not be executed", type(command).__name__, exc_info=exc)
            if run == self._runs:
                self.output.value = (
                    f"<div style='color:#b00020'>⚠ {html.escape(type(exc).__name__)}: "
                    f"{html.escape(str(exc))}</div>"
                )
            return None
        if run != self._runs:
            return result  # Execute was clicked again meanwhile: the latest run is shown
        self.result = result
        self.output.value = result._repr_html_()
        return result
