"""The notebook says what is wrong with a value in the words of the one validation formatter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from pydantic import ValidationError, model_validator

from llmgine import Command, MessageBus
from llmgine._validation import describe_validation_error
from llmgine.notebook.widgets.form import CommandForm

NOTEBOOK = Path(__file__).resolve().parents[2] / "llmgine" / "notebook"


def test_no_notebook_module_formats_a_validation_error_itself() -> None:
    readers = []
    for path in sorted(NOTEBOOK.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            key = node.slice if isinstance(node, ast.Subscript) else None
            if isinstance(key, ast.Constant) and key.value in ("loc", "msg"):
                readers.append(f"{path.name}:{node.lineno}")
    assert readers == []  # an error's place and message come from llmgine._validation


def test_a_magic_states_a_validation_error_as_the_formatter_does(shell: InteractiveShell) -> None:
    with pytest.raises(ValidationError) as caught:
        eval("PingCommand(n='x')", shell.user_ns)
    result = shell.run_cell("%llmgine execute PingCommand(n='x')")
    expected = describe_validation_error(caught.value, whole="value")
    assert str(result.error_in_exec) == f"could not evaluate \"PingCommand(n='x')\": {expected}"


class Booking(Command):
    nights: int = 1
    guests: int = 1

    @model_validator(mode="after")
    def _room_for_everyone(self) -> Booking:
        if self.guests > 4:
            raise ValueError("at most 4 guests per room")
        return self


async def test_a_form_names_the_command_for_a_problem_with_it_as_a_whole(bus: MessageBus) -> None:
    form = CommandForm(Booking, bus)
    form.fields["guests"].value = 9
    assert form.execute() is None
    assert "<b>Booking</b>: Value error, at most 4 guests per room" in form.errors.value
