"""One helper per concept in the LLM layer: validation errors as text, the log through the codec."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

import llmgine.llm.providers.replay as replay_module
from llmgine._validation import describe_validation_error
from llmgine.errors import ToolError
from llmgine.llm.providers.replay import read_responses
from llmgine.llm.structured import parse_output
from llmgine.llm.tools import Tool


class Point(BaseModel):
    x: int
    y: int


def move(x: int, y: int) -> str:
    """Move.

    Args:
        x: Across.
        y: Down.
    """
    return f"{x},{y}"


def test_tools_and_structured_output_describe_a_validation_error_the_same_way() -> None:
    with pytest.raises(ValidationError) as caught:
        Point.model_validate({"x": "a"})
    described = describe_validation_error(caught.value)
    assert described == (
        "x: Input should be a valid integer, unable to parse string as an integer; "
        "y: Field required"
    )
    assert parse_output(Point, '{"x": "a"}') == described
    with pytest.raises(ToolError) as tool_error:
        Tool(move).validate({"x": "a"})
    assert str(tool_error.value) == f"invalid arguments for move: {described}"


def test_a_problem_with_the_whole_value_is_named_as_asked() -> None:
    with pytest.raises(ValidationError) as caught:
        Point.model_validate_json("[1, 2]")
    assert describe_validation_error(caught.value).startswith("Input should be")
    assert describe_validation_error(caught.value, whole="arguments").startswith(
        "arguments: Input should be"
    )


LINE = (
    '{"kind":"event","type":"LLMResponseEvent","module":"llmgine.llm.events",'
    '"id":"0b8f7c1e-1f0e-4a53-9a35-4c1c0f1c2d3e","timestamp":"2026-11-24T15:08:01.123456Z",'
    '"session_id":"global","trace_id":null,"span_id":null,"metadata":{},'
    '"data":{"content":"Hello.","model":"gpt-4o","usage":{"input_tokens":3,"output_tokens":1}}}'
)


def test_replay_reads_the_log_through_the_codec_even_with_a_bom(tmp_path: Path) -> None:
    log = tmp_path / "edited.jsonl"
    log.write_bytes(b"\xef\xbb\xbf" + LINE.encode() + b"\r\n" + LINE.encode() + b"\n")
    completions = read_responses(log)
    assert [c.content for c in completions] == ["Hello.", "Hello."]
    assert completions[0].usage.input_tokens == 3
    tree = ast.parse(inspect.getsource(replay_module))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert "json" not in names  # no envelope parsed by hand
