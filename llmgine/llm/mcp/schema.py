"""Arguments checked against an MCP server's input schema, within a time bound.

A server's schema may hold a regular expression that backtracks for ages on some
values: ``^(a+)+$`` takes 25 s on 31 characters in Python's :mod:`re`, which holds
the interpreter (and so the event loop, and every other thread) the whole time.
jsonschema matches ``pattern``, ``patternProperties`` and ``additionalProperties``
with :mod:`re`; here those keywords match with the ``regex`` package instead, which
stops a match at a deadline and lets other threads run while it matches. So a call
is checked in a worker thread while the loop goes on, and a check that takes longer
than :data:`PATTERN_TIMEOUT` seconds in all is cut off and reported to the model as
such; the call is not sent.

A schema is checked once, when its server is added (:func:`schema_problem`): a
schema that is not a valid JSON Schema for an object, that the OpenAI API would
reject (``oneOf`` and the like at the top), whose patterns do not compile, or whose
patterns jsonschema would match with :mod:`re` (``patternProperties`` under
``unevaluatedProperties``) leaves its tool out.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any, NamedTuple

from llmgine.errors import ConfigurationError, ToolError

__all__ = ["PATTERN_TIMEOUT", "check_arguments", "make_validator", "schema_problem"]

PATTERN_TIMEOUT = 1.0
"""Seconds the pattern matches of one call's arguments may take in all."""


class _Check(NamedTuple):
    """The call being checked: its tool, its time bound, and when that bound ends."""

    tool: str
    timeout: float
    deadline: float


_CHECK: contextvars.ContextVar[_Check] = contextvars.ContextVar("llmgine_mcp_check")


def _cut_off(pattern: str) -> ToolError:
    """The error of a check whose pattern ran past its deadline: the call is not sent."""
    check = _CHECK.get(None) or _Check("the tool", PATTERN_TIMEOUT, 0.0)
    return ToolError(
        f"arguments for {check.tool} could not be checked: the server's pattern "
        f"{pattern[:200]!r} took more than {check.timeout:g} s on them (a pattern that "
        "backtracks); the call was not sent. Send a shorter or simpler value."
    )


def _regex() -> Any:
    """The ``regex`` package (part of the ``mcp`` extra), imported on first use."""
    try:
        import regex  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - the mcp extra installs it
        raise ConfigurationError(
            "MCP tools check their arguments with the regex package: pip install 'llmgine[mcp]'"
        ) from exc
    return regex


def _search(pattern: str, text: str) -> bool:
    """``re.search(pattern, text)``, cut off at the check's deadline."""
    regex = _regex()
    check = _CHECK.get(None)
    deadline = check.deadline if check else time.monotonic() + PATTERN_TIMEOUT
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _cut_off(pattern)
    try:
        return regex.search(pattern, text, concurrent=True, timeout=remaining) is not None
    except TimeoutError:
        raise _cut_off(pattern) from None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema import ValidationError

    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    from jsonschema import ValidationError

    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [
        key
        for key in instance
        if key not in known and not any(_search(pattern, key) for pattern in patterns)
    ]
    if validator.is_type(additional, "object"):
        for key in extras:
            yield from validator.descend(instance[key], additional, path=key)
    elif not additional and extras:
        shown = ", ".join(repr(key) for key in sorted(extras))
        yield ValidationError(f"Additional properties are not allowed ({shown} unexpected)")


@cache
def _validator_class() -> Any:
    from jsonschema import Draft202012Validator, validators

    return validators.extend(
        Draft202012Validator,
        validators={
            "pattern": _pattern,
            "patternProperties": _pattern_properties,
            "additionalProperties": _additional_properties,
        },
    )


def make_validator(schema: dict[str, Any]) -> Any:
    """A JSON Schema (2020-12) validator of ``schema`` whose patterns are cut off in time."""
    return _validator_class()(schema)


def _patterns(node: Any) -> Iterator[str]:
    """Every regular expression in a schema (``pattern`` values, ``patternProperties`` keys)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            elif key == "patternProperties" and isinstance(value, dict):
                yield from (k for k in value if isinstance(k, str))
            yield from _patterns(value)
    elif isinstance(node, list):
        for item in node:
            yield from _patterns(item)


def _keywords(node: Any) -> set[str]:
    """Every key used anywhere in a schema."""
    if isinstance(node, dict):
        return set(node).union(*(_keywords(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_keywords(v) for v in node))
    return set()


_NOT_AT_THE_TOP = frozenset({"allOf", "anyOf", "oneOf", "not", "enum"})
"""Keywords the OpenAI API refuses at the top of a function's parameters."""


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` cannot be a tool's input schema, or ``None`` when it can."""
    from jsonschema import Draft202012Validator, SchemaError

    if not isinstance(schema, dict):
        return f"its input schema is not a JSON object but {type(schema).__name__}"
    if schema.get("type", "object") != "object":
        return f"its input schema is of type {schema.get('type')!r}; a tool takes an object"
    combined = sorted(_NOT_AT_THE_TOP & set(schema))
    if combined:
        return (
            f"its input schema has {', '.join(combined)} at the top level, which the "
            "OpenAI API rejects for a tool's parameters"
        )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the top"
        return f"its input schema is not valid JSON Schema (at {where}: {exc.message})"
    if "unevaluatedProperties" in _keywords(schema) and "patternProperties" in _keywords(schema):
        return (
            "its input schema combines unevaluatedProperties with patternProperties, "
            "which cannot be checked within a time bound"
        )
    regex = _regex()
    for pattern in _patterns(schema):
        try:
            regex.compile(pattern)
        except regex.error as exc:
            return f"its input schema has a pattern that does not compile: {pattern!r} ({exc})"
    return None


def check_arguments(
    validator: Any, arguments: dict[str, Any], tool: str, timeout: float = PATTERN_TIMEOUT
) -> None:
    """Check ``arguments`` of the tool called ``tool``; patterns may take ``timeout`` s in all.

    Raises:
        ToolError: The arguments do not fit the schema, or a pattern check was cut off
            (the call must not be sent: it was not checked).
    """
    token = _CHECK.set(_Check(tool, timeout, time.monotonic() + timeout))
    try:  # a pattern cut off raises the ToolError that says so (see _search)
        problems = sorted(validator.iter_errors(arguments), key=lambda e: list(map(str, e.path)))
    finally:
        _CHECK.reset(token)
    if problems:
        shown = "; ".join(
            f"{'.'.join(str(p) for p in e.path) or 'arguments'}: {e.message}" for e in problems
        )
        raise ToolError(f"invalid arguments for {tool}: {shown}")
