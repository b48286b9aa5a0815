"""The offline provider: deterministic, instant, no key and no network.

It is the default when no API key is set, so every notebook and test runs
anywhere. When the latest user message names a tool, it calls that tool with
arguments read from the prompt, then answers from the tool's result; otherwise
it says what it is and how to switch to a real model.
"""

from __future__ import annotations

import json
import re
from typing import Any

from llmgine.llm.providers.base import Capabilities, Provider, count_tokens
from llmgine.llm.types import ChatMessage, Completion, LLMRequest, ToolCall, Usage

__all__ = ["OfflineProvider", "arguments_from_prompt", "instance_from_schema"]

_VERB_PREFIXES = ("get_", "fetch_", "lookup_", "look_up_", "search_", "find_", "compute_", "calc_")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_VALUE = r"(?:\"([^\"]*)\"|'([^']*)'|([^\s,;!?]+))"


def _mentions(text: str, tool_name: str) -> bool:
    lowered = text.lower()
    names = {tool_name.lower(), tool_name.lower().replace("_", " ")}
    for prefix in _VERB_PREFIXES:
        if tool_name.lower().startswith(prefix) and len(tool_name) > len(prefix) + 2:
            names.add(tool_name.lower()[len(prefix) :].replace("_", " "))
    return any(re.search(rf"\b{re.escape(name)}\b", lowered) for name in names)


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    value = value.strip().rstrip(".")
    if kind == "integer":
        return int(float(value))
    if kind == "number":
        return float(value)
    if kind == "boolean":
        return value.lower() in {"true", "yes", "1", "on"}
    return value


def _default(schema: dict[str, Any]) -> Any:
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    return {"integer": 0, "number": 0, "boolean": False, "array": [], "object": {}}.get(
        str(schema.get("type")), ""
    )


def _property_schema(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    # Optional parameters come as anyOf [X, null]; Enums as $ref into $defs.
    if "$ref" in schema:
        schema = root.get("$defs", {}).get(schema["$ref"].rsplit("/", 1)[-1], schema)
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            merged = {**_property_schema(option, root), **schema}
            merged.pop("anyOf", None)
            return merged
    return schema


def arguments_from_prompt(
    text: str, parameters: dict[str, Any], tool_name: str = ""
) -> dict[str, Any]:
    """Read a tool's arguments from a prompt, deterministically.

    For each parameter, in order: ``name=value``/``name: value``, then ``name value``
    (``city Paris``), then a mentioned enum value, then numbers in order of
    appearance for numeric parameters, then a capitalised word for a lone required
    string (``weather in Paris``), and finally the schema's default.
    """
    properties: dict[str, Any] = parameters.get("properties", {})
    required = set(parameters.get("required", []))
    numbers = [m.group() for m in _NUMBER.finditer(text)]
    used_numbers: set[int] = set()
    arguments: dict[str, Any] = {}
    for name, raw_schema in properties.items():
        schema = _property_schema(raw_schema, parameters)
        words = rf"\b{re.escape(name)}\b"
        found = re.search(rf"{words}\s*[=:]\s*{_VALUE}", text, re.IGNORECASE) or re.search(
            rf"{words}\s+{_VALUE}", text, re.IGNORECASE
        )
        value: str | None = (
            next((g for g in found.groups() if g is not None), None) if found else None
        )
        if value is not None and found is not None:
            numbers_in_match = [
                m.start() for m in _NUMBER.finditer(text, found.start(), found.end())
            ]
            used_numbers.update(
                i for i, m in enumerate(_NUMBER.finditer(text)) if m.start() in numbers_in_match
            )
        if value is None and schema.get("enum"):
            value = next(
                (
                    str(v)
                    for v in schema["enum"]
                    if re.search(rf"\b{re.escape(str(v))}\b", text, re.I)
                ),
                None,
            )
        if value is None and schema.get("type") in ("integer", "number"):
            index = next((i for i in range(len(numbers)) if i not in used_numbers), None)
            if index is not None:
                used_numbers.add(index)
                value = numbers[index]
        if value is None and schema.get("type") == "string" and name in required:
            value = _capitalised_word(text, tool_name)
        try:
            arguments[name] = _default(schema) if value is None else _coerce(value, schema)
        except ValueError:
            arguments[name] = _default(schema)
    return arguments


def instance_from_schema(schema: dict[str, Any], text: str = "") -> Any:
    """Build a value that matches a JSON schema, deterministically.

    Object properties are read from ``text`` where it names them (as for tool
    arguments); everything else gets a plain value of its type, so the same
    schema and text always give the same value.
    """
    return _instance(schema, schema, text, depth=0)


def _instance(schema: dict[str, Any], root: dict[str, Any], text: str, depth: int) -> Any:
    schema = _property_schema(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _instance({**schema[key][0], "$defs": root.get("$defs", {})}, root, text, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties: dict[str, Any] = schema.get("properties", {})
        found = arguments_from_prompt(text, schema) if depth == 0 and text else {}
        value: dict[str, Any] = {}
        for name, sub in properties.items():
            resolved = _property_schema(sub, root)
            simple = resolved.get("type") in ("string", "integer", "number", "boolean")
            if simple and name in found and found[name] not in ("", None):
                value[name] = found[name]
            else:
                value[name] = _instance(sub, root, text, depth + 1)
        return value
    if kind == "array":
        items = schema.get("items", {})
        count = int(schema.get("minItems", 1 if depth < 3 else 0))
        return [_instance(items, root, text, depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    word = "offline"
    return word.ljust(int(schema.get("minLength", 0)), "x")[: schema.get("maxLength")]


def _capitalised_word(text: str, tool_name: str) -> str | None:
    candidates = [
        m.group()
        for m in re.finditer(r"(?<![.!?]\s)(?<!^)\b[A-Z][\w-]*", text.strip())
        if m.group().lower() not in tool_name.lower()
    ]
    return candidates[-1] if candidates else None


def _latest_user_text(messages: list[ChatMessage]) -> str:
    return next((m.content or "" for m in reversed(messages) if m.role == "user"), "")


class OfflineProvider(Provider):
    """A deterministic stand-in for a model: same input, same output, every run.

    It calls a registered tool when the latest user message names it (by name,
    by name with spaces, or without a ``get_``-style prefix: ``weather`` for
    ``get_weather``), then answers from the result. Usage counts words and marks.
    """

    name = "offline"

    def __init__(self, model: str = "offline") -> None:
        super().__init__(model)

    @property
    def capabilities(self) -> Capabilities:
        """A schema-valid answer built by itself; usage in streams too."""
        return Capabilities(json_schema=True, stream_usage=True)

    @property
    def model_string(self) -> str:
        """``"offline"`` (or ``"offline:<name>"`` for another name)."""
        return "offline" if self.model == "offline" else f"offline:{self.model}"

    async def complete(self, request: LLMRequest) -> Completion:
        """Answer ``request`` deterministically."""
        messages = request.messages
        after_tools = bool(messages) and messages[-1].role == "tool"
        completion = None if after_tools else self._call_tool(request)
        if completion is None and request.output_schema is not None:
            completion = self._structured(request, request.output_schema)
        elif completion is None:
            completion = self._answer_from_tools(messages) if after_tools else self._reply(request)
        usage = Usage(
            input_tokens=sum(count_tokens(m.content) for m in messages),
            output_tokens=count_tokens(completion.content)
            + sum(count_tokens(c.arguments) for c in completion.tool_calls),
        )
        return completion.model_copy(update={"usage": usage, "model": request.model})

    def _call_tool(self, request: LLMRequest) -> Completion | None:
        text = _latest_user_text(request.messages)
        choice = request.tool_choice
        if choice == "none":
            return None
        names = [str(d.get("function", {}).get("name", "")) for d in request.tools]
        # A forced choice calls the named tool (or, for "required", the first) even unnamed.
        forced = choice if choice in names else (names[0] if choice == "required" and names else "")
        calls: list[ToolCall] = []
        for definition in request.tools:
            function = definition.get("function", {})
            name = str(function.get("name", ""))
            if forced and name != forced:
                continue
            if name and (name == forced or _mentions(text, name)):
                arguments = arguments_from_prompt(text, function.get("parameters", {}), name)
                call_id = f"call_{len(request.messages)}_{len(calls)}"
                calls.append(ToolCall(id=call_id, name=name, arguments=json.dumps(arguments)))
        if not calls:
            return None
        return Completion(tool_calls=calls, finish_reason="tool_calls")

    @staticmethod
    def _structured(request: LLMRequest, schema: dict[str, Any]) -> Completion:
        text = _latest_user_text(request.messages)
        value = instance_from_schema(schema, text)
        return Completion(content=json.dumps(value, ensure_ascii=False), finish_reason="stop")

    @staticmethod
    def _answer_from_tools(messages: list[ChatMessage]) -> Completion:
        results = []
        for message in reversed(messages):
            if message.role != "tool":
                break
            results.append(f"{message.name} returned {message.content}")
        text = "Here is what the tools said: " + "; ".join(reversed(results))
        if not text.endswith((".", "!", "?")):
            text += "."
        return Completion(content=text, finish_reason="stop")

    @staticmethod
    def _reply(request: LLMRequest) -> Completion:
        text = _latest_user_text(request.messages).strip()
        quoted = text if len(text) <= 80 else text[:77] + "..."
        tools = [str(t.get("function", {}).get("name")) for t in request.tools]
        tool_hint = (
            f" I can call your tools when you name one ({', '.join(tools)})." if tools else ""
        )
        tokens = count_tokens(text)
        reply = (
            f'You said: "{quoted}" ({tokens} token{"" if tokens == 1 else "s"}). '
            "I am the offline model: "
            f"deterministic, instant, no key or network needed.{tool_hint} For real answers, "
            'set OPENAI_API_KEY or choose a model such as "openai:gpt-4o-mini".'
        )
        return Completion(content=reply, finish_reason="stop")
