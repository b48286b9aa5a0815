"""Pair llmgine's span start and end lines into finished spans, with OpenInference attributes.

Pure Python, no OpenTelemetry: :class:`SpanAssembler` reads decoded log lines in
order and returns a :class:`FinishedSpan` for every span end. Besides the span's own
``TraceEvent`` pair it remembers what OpenInference wants on a span: a command's
fields (``input.value``), its result or a model's reply (``output.value``), a tool
call's arguments and result, a command's traceback.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmgine.observability.codec import Envelope

__all__ = ["FinishedSpan", "SpanAssembler"]

_KINDS = {"LLM": "LLM", "TOOL": "TOOL", "CHAIN": "CHAIN"}
_MAX_VALUE = 64 * 1024
_MAX_OPEN = 100_000


def _nanos(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr, ensure_ascii=False)
    return text if len(text) <= _MAX_VALUE else text[:_MAX_VALUE] + "…"


def _attribute(value: Any) -> Any:
    """A value OpenTelemetry accepts: a primitive, a homogeneous list of them, or JSON text."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple) and value:
        kinds = {type(v) for v in value}
        if len(kinds) == 1 and kinds <= {bool, int, float, str}:
            return list(value)
    return _text(value)


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
        self._inputs: dict[str, str] = {}
        self._prompts: dict[str, str] = {}
        self._outputs: dict[str, str] = {}
        self._tracebacks: dict[str, str] = {}
        self._tools: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()
        self._max_open = max_open
        self.evicted = 0
        """Spans forgotten because too many were open at once."""

    @property
    def open_spans(self) -> int:
        """Spans started and not yet ended."""
        return len(self._open)

    def add(self, envelope: Envelope) -> FinishedSpan | None:
        """Take one log line; return the span it ends, if it ends one."""
        data = envelope.data
        if not isinstance(data, dict):
            return None
        kind, type_, span_id = envelope.kind, envelope.type, envelope.span_id
        if type_ == "TraceEvent":
            return self._trace(envelope.session_id, data)
        if kind == "command" and isinstance(span_id, str):
            self._inputs[span_id] = _text(data)
            if isinstance(data.get("prompt"), str):
                self._prompts[span_id] = _text(data["prompt"])
        elif type_ in ("CommandResultEvent", "CommandErrorEvent") and isinstance(span_id, str):
            result = data.get("command_result") or {}
            value = result.get("result") if result.get("success") else result.get("error")
            if value is not None:
                self._outputs[span_id] = _text(value)
            if isinstance(data.get("traceback"), str):
                self._tracebacks[span_id] = data["traceback"]
        elif type_ == "LLMResponseEvent" and isinstance(span_id, str):
            if data.get("content") is not None:
                self._outputs[span_id] = _text(data["content"])
            elif data.get("tool_calls"):
                self._outputs[span_id] = _text(data["tool_calls"])
        elif type_ == "ToolCallEvent":
            self._tool(str(data.get("call_id")), arguments=data.get("arguments"))
        elif type_ == "ToolResultEvent":
            value = data.get("result") if data.get("error") is None else data.get("error")
            self._tool(str(data.get("call_id")), result=value)
        return None

    def _tool(self, call_id: str, arguments: Any = None, result: Any = None) -> None:
        before = self._tools.pop(call_id, (None, None))
        self._tools[call_id] = (
            _text(arguments) if arguments is not None else before[0],
            _text(result) if result is not None else before[1],
        )
        while len(self._tools) > 10_000:
            self._tools.popitem(last=False)

    def _trace(self, session_id: str, data: dict[str, Any]) -> FinishedSpan | None:
        context = data.get("span_context") or {}
        span_id = context.get("span_id")
        if not isinstance(span_id, str):
            return None
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
        end_ns = _nanos(end.get("end_time")) or 0
        start_ns = _nanos(start.get("start_time")) or _nanos(end.get("start_time"))
        if start_ns is None:  # the start line was lost: the duration tells where it began
            start_ns = end_ns - int(float(end.get("duration_ms") or 0) * 1_000_000)
        kind = str(end.get("span_kind") or start.get("span_kind") or "INTERNAL")
        parent = context.get("parent_span_id")
        attributes = {**(start.get("attributes") or {}), **(end.get("attributes") or {})}
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
