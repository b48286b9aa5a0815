"""Tools: plain Python functions the model may call, with schemas from their signatures."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Iterable
from typing import Any, get_type_hints

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from llmgine._validation import describe_validation_error
from llmgine.errors import ToolError

__all__ = ["Tool", "ToolRegistry", "arguments_object", "tool"]


def _describe(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    summary = "\n\n".join(p for p in (doc.short_description, doc.long_description) if p)
    return summary, {p.arg_name: p.description or "" for p in doc.params}


def arguments_object(name: str, arguments: str | dict[str, Any] | None) -> dict[str, Any]:
    """The model's arguments for tool ``name`` as a dict (parsed if JSON text).

    Raises:
        ToolError: They are not valid JSON, or not a JSON object.
    """
    try:
        raw = json.loads(arguments or "{}") if isinstance(arguments, str) else arguments
    except json.JSONDecodeError as exc:
        raise ToolError(f"arguments for {name} are not valid JSON ({exc.msg})") from exc
    if not isinstance(raw, dict):
        raise ToolError(f"arguments for {name} must be a JSON object, got {raw!r}")
    return raw


class Tool:
    """A function the model may call, with its JSON schema and argument validation.

    The schema comes from the signature (through pydantic): ``Literal`` and ``Enum``
    parameters become ``enum``, parameters with defaults are optional, and the
    descriptions come from the docstring's summary and its Google-style ``Args:``.

    Args:
        fn: The function, sync or async. Sync functions run in a worker thread.
        name: The name the model sees; defaults to the function's name.
        description: Defaults to the docstring's summary.
        requires_approval: Each call waits for a person's approval (``ApproveToolCallCommand``).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        requires_approval: bool = False,
    ) -> None:
        if isinstance(fn, type):
            # Its schema would be the constructor's: every field of a Command or a pydantic
            # model, internal ones (id, session_id, metadata) included, offered to the model.
            raise TypeError(
                f"A tool must be a function, not the class {fn.__name__}: pass a function "
                f"whose arguments are what the model may fill in (it can build and return a "
                f"{fn.__name__} itself)."
            )
        if not callable(fn):
            raise TypeError(f"A tool must be a function; got {type(fn).__name__}.")
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", type(fn).__name__))
        summary, arg_docs = _describe(fn)
        self.description = description if description is not None else summary
        self.requires_approval = requires_approval
        self.is_async = inspect.iscoroutinefunction(fn)
        self.arguments_model = self._arguments_model(fn, arg_docs)

    def _arguments_model(self, fn: Callable[..., Any], arg_docs: dict[str, str]) -> type[BaseModel]:
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        for param in inspect.signature(fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(
                    f"Tool {self.name}: *args and **kwargs cannot be described to a model."
                )
            annotation = hints.get(param.name, Any)
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (
                annotation,
                Field(default, description=arg_docs.get(param.name) or None),
            )
        config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
        return create_model(f"{self.name}_arguments", __config__=config, **fields)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    @property
    def span_attributes(self) -> dict[str, Any]:
        """Extra attributes of this tool's ``TOOL`` spans (an MCP tool names its server)."""
        return {}

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments."""
        schema = self.arguments_model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return schema

    def definition(self) -> dict[str, Any]:
        """The tool in the Chat Completions ``tools`` shape."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}

    def validate(self, arguments: str | dict[str, Any]) -> dict[str, Any]:
        """Return the arguments validated against the signature.

        Raises:
            ToolError: The arguments are not a JSON object or do not fit the signature.
        """
        raw = arguments_object(self.name, arguments)
        try:
            model = self.arguments_model.model_validate(raw)
        except ValidationError as exc:
            problems = describe_validation_error(exc, whole="arguments")
            raise ToolError(f"invalid arguments for {self.name}: {problems}") from exc
        return {name: getattr(model, name) for name in type(model).model_fields}

    async def run(self, arguments: str | dict[str, Any]) -> Any:
        """Validate ``arguments`` and call the function (sync ones in a worker thread)."""
        kwargs = self.validate(arguments)
        if self.is_async:
            return await self.fn(**kwargs)
        result = await asyncio.to_thread(self.fn, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
) -> Any:
    """Mark a function as a tool: ``@tool`` or ``@tool(name="weather")``.

    The function is returned unchanged (still callable as before) with its
    :class:`Tool` attached as ``fn.__llmgine_tool__``; pass it in ``tools=[...]``.
    """

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        f.__llmgine_tool__ = Tool(  # type: ignore[attr-defined]
            f, name=name, description=description, requires_approval=requires_approval
        )
        return f

    return mark(fn) if fn is not None else mark


class ToolRegistry:
    """The tools of one engine, by name."""

    def __init__(self, tools: Iterable[Callable[..., Any] | Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, fn: Callable[..., Any] | Tool) -> Tool:
        """Add a function, a ``@tool`` function or a :class:`Tool`; a same name replaces."""
        t: Tool = fn if isinstance(fn, Tool) else getattr(fn, "__llmgine_tool__", None) or Tool(fn)
        self._tools[t.name] = t
        return t

    def unregister(self, name: str) -> bool:
        """Remove the tool called ``name``; return whether there was one."""
        return self._tools.pop(name, None) is not None

    def get(self, name: str) -> Tool | None:
        """Return the tool called ``name``, if any."""
        return self._tools.get(name)

    def __iter__(self) -> Any:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def definitions(self) -> list[dict[str, Any]]:
        """Every tool in the Chat Completions ``tools`` shape."""
        return [t.definition() for t in self._tools.values()]
