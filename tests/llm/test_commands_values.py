"""PromptCommand refuses request values no model could use, saying which and why."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from llmgine.llm import PromptCommand


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"max_tokens": -5}, "max_tokens\n  Input should be greater than or equal to 1"),
        ({"max_tokens": 0}, "max_tokens\n  Input should be greater than or equal to 1"),
        ({"temperature": float("nan")}, "temperature\n  Input should be a finite number"),
        ({"temperature": float("inf")}, "temperature\n  Input should be a finite number"),
        ({"temperature": -1.0}, "temperature\n  Input should be greater than or equal to 0"),
    ],
)
def test_prompt_command_refuses_max_tokens_below_one_and_a_bad_temperature(
    values: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValidationError) as info:
        PromptCommand(prompt="x", **values)
    assert expected in str(info.value)


def test_prompt_command_takes_the_edge_values() -> None:
    command = PromptCommand(prompt="x", max_tokens=1, temperature=0.0)
    assert (command.max_tokens, command.temperature) == (1, 0.0)
    assert PromptCommand(prompt="x").temperature is None
