"""Structured output: the schema sent for an ``output_type``, and checking the answer against it."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llmgine._validation import describe_validation_error
from llmgine.llm.types import ChatMessage

__all__ = ["correction", "output_schema", "parse_output", "with_json_instruction"]

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def output_schema(output_type: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of ``output_type``, its ``title`` naming it."""
    schema = output_type.model_json_schema()
    schema.setdefault("title", output_type.__name__)
    return schema


def _instruction(schema: dict[str, Any]) -> str:
    return (
        "Answer with only a JSON object that matches this JSON schema, and no other text:\n"
        + json.dumps(schema, ensure_ascii=False)
    )


def with_json_instruction(messages: list[ChatMessage], schema: dict[str, Any]) -> list[ChatMessage]:
    """The messages with a system instruction to answer in JSON (for providers with no JSON mode).

    The instruction joins the first system message, or becomes one; the
    conversation itself is not changed.
    """
    instruction = _instruction(schema)
    if messages and messages[0].role == "system":
        first = messages[0]
        merged = f"{first.content}\n\n{instruction}" if first.content else instruction
        return [first.model_copy(update={"content": merged}), *messages[1:]]
    return [ChatMessage(role="system", content=instruction), *messages]


def _json_text(content: str) -> str:
    """The JSON inside an answer: without a Markdown fence or text around one object."""
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    if not text.startswith(("{", "[")) and "{" in text and "}" in text:
        text = text[text.index("{") : text.rindex("}") + 1]
    return text


def parse_output(output_type: type[T], content: str | None) -> T | str:
    """Validate an answer: the instance, or (when invalid) the validation error as short text."""
    try:
        return output_type.model_validate_json(_json_text(content or ""))
    except ValidationError as exc:
        return describe_validation_error(exc)


def correction(output_type: type[BaseModel], error: str) -> ChatMessage:
    """The message that sends a validation error back to the model."""
    return ChatMessage(
        role="user",
        content=(
            f"That answer is not a valid {output_type.__name__}: {error}. Answer again with only "
            "the corrected JSON object."
        ),
    )
