"""Pair llmgine's span start and end lines into finished spans, with OpenInference attributes.

Pure Python, no OpenTelemetry: :class:`SpanAssembler` reads decoded log lines in
order and returns a :class:`FinishedSpan` for every span end. Besides the span's own
``TraceEvent`` pair it remembers what OpenInference wants on a span: a command's
fields (``input.value``), its result or a model's reply (``output.value``), a tool
call's arguments and result, a command's traceback.

Lines are recognised by their envelope's module and type together
(:data:`SPAN_MESSAGES`): a user's own event named ``TraceEvent`` or
``CommandResultEvent`` is not llmgine's. A line of llmgine's whose fields do not
hold what a span needs (a log edited by hand, another version) raises
:class:`~llmgine.errors.LogFormatError` and changes nothing.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmgine.errors import LogFormatError
from llmgine.observability.codec import Envelope

__all__ = ["SPAN_MESSAGES", "FinishedSpan", "SpanAssembler"]

_TRACE = ("llmgine.observability.events", "TraceEvent")
_RESULTS = frozenset(
    {
        ("llmgine.messages.events", "CommandResultEvent"),
        ("llmgine.messages.events", "CommandErrorEvent"),
    }
)
_LLM_RESPONSE = ("llmgine.llm.events", "LLMResponseEvent")
_TOOL_CALL = ("llmgine.llm.events", "ToolCallEvent")
_TOOL_RESULT = ("llmgine.llm.events", "ToolResultEvent")
_EVALUATION = ("llmgine.evals.events", "EvaluationEvent")

SPAN_MESSAGES = frozenset({_TRACE, *_RESULTS, _LLM_RESPONSE, _TOOL_CALL, _TOOL_RESULT, _EVALUATION})
"""The (module, class name) of the events a span is built from; besides them, every command."""

_KINDS = {"LLM": "LLM", "TOOL": "TOOL", "CHAIN": "CHAIN", "EVALUATOR": "EVALUATOR"}
_MAX_VALUE = 64 * 1024
_MAX_OPEN = 100_000
_MAX_NOTES = 10_000
"""Inputs, outputs and tracebacks kept for spans not yet ended; the oldest go first."""


def _nanos(value: Any, field_name: str) -> int | None:
    """A time of a span line in nanoseconds; ``None`` when absent."""
    if value is None:
        return None
    try:
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000
    except (ValueError, TypeError, OverflowError, OSError):
        raise LogFormatError(f"A TraceEvent's {field_name} is not a time: {value!r:.80}") from None


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr, ensure_ascii=False)
    return text if len(text) <= _MAX_VALUE else text[:_MAX_VALUE] + "…"


def _primitive(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value < 2**63  # OTLP's int is 64 bits: a bigger one fails the batch
    return isinstance(value, bool | float | str)


def _attribute(value: Any) -> Any:
    """A value OpenTelemetry accepts: a primitive, a homogeneous list of them, or JSON text."""
    if _primitive(value):
        return _text(value) if isinstance(value, str) else value
    if isinstance(value, list | tuple) and value:
        kinds = {type(v) for v in value}
        if len(kinds) == 1 and all(_primitive(v) for v in value):
            return list(value)
    return _text(value)


def _note(table: OrderedDict[str, str], span_id: str, value: str) -> None:
    table[span_id] = value
    if len(table) > _MAX_NOTES:
        table.popitem(last=False)


def _dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LogFormatError(f"{what} is not an object: {value!r:.80}")
    return value


@dataclass
class FinishedSpan:
    """One span, start and end paired, ready to become an OpenTelemetry span."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str | None
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)


class SpanAssembler:
    """Turns decoded log lines (envelopes), in order, into :class:`FinishedSpan` s.

    Besides the ``TraceEvent`` pairs it remembers what OpenInference wants on a
    span: the command's fields (``input.value``), its result or the model's
    reply (``output.value``), a tool call's arguments and result, a traceback.
    """

    def __init__(self, max_open: int = _MAX_OPEN) -> None:
        self._open: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._inputs: OrderedDict[str, str] = OrderedDict()
        self._prompts: OrderedDict[str, str] = OrderedDict()
        self._outputs: OrderedDict[str, str] = OrderedDict()
        self._tracebacks: OrderedDict[str, str] = OrderedDict()
        self._evaluations: OrderedDict[str, list[tuple[str, int, dict[str, Any]]]] = OrderedDict()
        self._tools: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()
        self._max_open = max_open
        self.evicted = 0
        """Spans forgotten because too many were open at once."""

    @property
    def open_spans(self) -> int:
        """Spans started and not yet ended."""
        return len(self._open)

    def add(self, envelope: Envelope) -> FinishedSpan | None:
        """Take one log line; return the span it ends, if it ends one.

        Raises:
            LogFormatError: The line is one of llmgine's span lines (or a command)
                and its fields are not what it should hold; nothing was changed.
        """
        data = _dict(envelope.data, "The line's data")
        key, span_id = (envelope.module, envelope.type), envelope.span_id
        if key == _TRACE:
            return self._trace(envelope.session_id, data)
        if envelope.kind == "command" and isinstance(span_id, str):
            prompt = data.get("prompt")
            _note(self._inputs, span_id, _text(data))
            if isinstance(prompt, str):
                _note(self._prompts, span_id, _text(prompt))
        elif key in _RESULTS and isinstance(span_id, str):
            result = _dict(data.get("command_result"), f"A {envelope.type}'s command_result")
            value = result.get("result") if result.get("success") else result.get("error")
            if value is not None:
                _note(self._outputs, span_id, _text(value))
            if isinstance(data.get("traceback"), str):
                _note(self._tracebacks, span_id, _text(data["traceback"]))
        elif key == _LLM_RESPONSE and isinstance(span_id, str):
            if data.get("content") is not None:
                _note(self._outputs, span_id, _text(data["content"]))
            elif data.get("tool_calls"):
                _note(self._outputs, span_id, _text(data["tool_calls"]))
        elif key == _EVALUATION and isinstance(span_id, str):
            self._evaluation(span_id, envelope, data)
        elif key == _TOOL_CALL:
            self._tool(str(data.get("call_id")), arguments=data.get("arguments"))
        elif key == _TOOL_RESULT:
            value = data.get("result") if data.get("error") is None else data.get("error")
            self._tool(str(data.get("call_id")), result=value)
        return None

    def _evaluation(self, span_id: str, envelope: Envelope, data: dict[str, Any]) -> None:
        """An ``EvaluationEvent`` as a ``gen_ai.evaluation.result`` event of its span."""
        attributes: dict[str, Any] = {"gen_ai.evaluation.name": _text(data.get("scorer"))}
        named = {
            "gen_ai.evaluation.score.value": data.get("score"),
            "gen_ai.evaluation.score.label": data.get("label"),
            "gen_ai.evaluation.explanation": data.get("explanation") or data.get("error"),
            "llmgine.evaluation.experiment": data.get("experiment"),
            "llmgine.evaluation.variant": data.get("variant"),
            "llmgine.evaluation.row": data.get("row"),
            "llmgine.evaluation.repeat": data.get("repeat"),
            "error.type": "scorer_error" if data.get("error") else None,
        }
        attributes.update({k: _attribute(v) for k, v in named.items() if v is not None})
        stamp = envelope.timestamp
        nanos = int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000
        events = self._evaluations.pop(span_id, [])
        events.append(("gen_ai.evaluation.result", nanos, attributes))
        self._evaluations[span_id] = events
        while len(self._evaluations) > _MAX_NOTES:
            self._evaluations.popitem(last=False)

    def _tool(self, call_id: str, arguments: Any = None, result: Any = None) -> None:
        before = self._tools.pop(call_id, (None, None))
        self._tools[call_id] = (
            _text(arguments) if arguments is not None else before[0],
            _text(result) if result is not None else before[1],
        )
        while len(self._tools) > 10_000:
            self._tools.popitem(last=False)

    def _trace(self, session_id: str, data: dict[str, Any]) -> FinishedSpan | None:
        context = _dict(data.get("span_context"), "A TraceEvent's span_context")
        span_id, trace_id = context.get("span_id"), context.get("trace_id")
        if not isinstance(span_id, str) or not isinstance(trace_id, str):
            raise LogFormatError("A TraceEvent without a span_context holding span_id and trace_id")
        _dict(data.get("attributes"), "A TraceEvent's attributes")
        _nanos(data.get("start_time"), "start_time")
        _nanos(data.get("end_time"), "end_time")
        if data.get("end_time") is None:
            self._open[span_id] = dict(data, session_id=session_id)
            while len(self._open) > self._max_open:
                self._open.popitem(last=False)
                self.evicted += 1
            return None
        start = self._open.pop(span_id, None) or {}
        return self._finish(span_id, context, start, data, session_id)

    def _finish(
        self,
        span_id: str,
        context: Mapping[str, Any],
        start: Mapping[str, Any],
        end: Mapping[str, Any],
        session_id: Any,
    ) -> FinishedSpan:
        end_ns = _nanos(end.get("end_time"), "end_time") or 0
        start_ns = _nanos(start.get("start_time"), "start_time") or _nanos(
            end.get("start_time"), "start_time"
        )
        if start_ns is None:  # the start line was lost: the duration tells where it began
            duration = end.get("duration_ms")
            if not isinstance(duration, int | float | None) or duration != duration:
                raise LogFormatError(
                    f"A TraceEvent's duration_ms is not a number: {duration!r:.80}"
                )
            start_ns = end_ns - int(min(float(duration or 0), 1e12) * 1_000_000)
        kind = str(end.get("span_kind") or start.get("span_kind") or "INTERNAL")
        parent = context.get("parent_span_id")
        attributes = {**_dict(start.get("attributes"), ""), **_dict(end.get("attributes"), "")}
        attrs: dict[str, Any] = {k: _attribute(v) for k, v in attributes.items() if v is not None}
        attrs["openinference.span.kind"] = _KINDS.get(kind, "CHAIN")
        attrs["llmgine.span.kind"] = kind
        if isinstance(session_id, str) and session_id != "global":
            attrs["session.id"] = session_id
        self._semantic(attrs, span_id, parent if isinstance(parent, str) else None)
        status = str(end.get("status") or "UNSET")
        message = end.get("status_message")
        events: list[tuple[str, int, dict[str, Any]]] = []
        if status == "ERROR":
            error_type, _, error_text = str(message or "").partition(": ")
            event: dict[str, Any] = {
                "exception.type": error_type or "Error",
                "exception.message": error_text or str(message or ""),
            }
            if span_id in self._tracebacks:
                event["exception.stacktrace"] = self._tracebacks[span_id]
            events.append(("exception", end_ns, event))
        events.extend(self._evaluations.pop(span_id, []))
        for table in (self._inputs, self._prompts, self._outputs, self._tracebacks):
            table.pop(span_id, None)
        return FinishedSpan(
            trace_id=str(context.get("trace_id")),
            span_id=span_id,
            parent_id=parent if isinstance(parent, str) else None,
            name=str(end.get("name") or start.get("name") or "span"),
            kind=kind,
            start_ns=start_ns,
            end_ns=max(end_ns, start_ns),
            status=status,
            status_message=message if isinstance(message, str) else None,
            attributes=attrs,
            events=events,
        )

    def _semantic(self, attrs: dict[str, Any], span_id: str, parent: str | None) -> None:
        """Add the OpenInference names beside the GenAI ones."""
        model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
        if model is not None:
            attrs["llm.model_name"] = model
        if "gen_ai.provider.name" in attrs:
            attrs["llm.provider"] = attrs["gen_ai.provider.name"]
        prompt, completion = (
            attrs.get("gen_ai.usage.input_tokens"),
            attrs.get("gen_ai.usage.output_tokens"),
        )
        if isinstance(prompt, int):
            attrs["llm.token_count.prompt"] = prompt
        if isinstance(completion, int):
            attrs["llm.token_count.completion"] = completion
        if isinstance(prompt, int) and isinstance(completion, int):
            attrs["llm.token_count.total"] = prompt + completion
        if "gen_ai.tool.name" in attrs:
            attrs["tool.name"] = attrs["gen_ai.tool.name"]
        inputs = self._inputs.get(span_id)
        output = self._outputs.get(span_id)
        call_id = attrs.get("gen_ai.tool.call.id")
        if isinstance(call_id, str) and call_id in self._tools:
            arguments, result = self._tools[call_id]
            inputs, output = inputs or arguments, output or result
        if inputs is None and attrs["openinference.span.kind"] == "LLM" and parent is not None:
            inputs = self._prompts.get(parent)  # the prompt of the command the call answers
        for name, value in (("input", inputs), ("output", output)):
            if value is not None:
                attrs[f"{name}.value"] = value
                attrs[f"{name}.mime_type"] = (
                    "application/json" if value[:1] in ("{", "[") else "text/plain"
                )
