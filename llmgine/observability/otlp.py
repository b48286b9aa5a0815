"""Send llmgine's spans to any OTLP/HTTP endpoint: Arize Phoenix, Jaeger, Langfuse, Logfire.

:class:`OTLPExporter` is a bus sink. The bus hands it every accepted message;
``write`` only appends the line to a bounded queue and returns, and a worker
thread pairs each span's start and end ``TraceEvent`` into one OpenTelemetry
span (same trace and span ids, parent, times, status, an ``exception`` event
for errors) and exports batches with ``opentelemetry-sdk``'s OTLP/HTTP exporter.
An endpoint that is slow or down never slows the bus: when the queue is full
lines are dropped, counted in :attr:`OTLPExporter.stats` and logged.

Attributes keep llmgine's OpenTelemetry GenAI names (``gen_ai.*``) and add the
OpenInference names Phoenix reads: ``openinference.span.kind`` (LLM, TOOL,
CHAIN), ``llm.model_name``, ``llm.provider``, ``llm.token_count.prompt`` /
``completion`` / ``total``, ``input.value``, ``output.value``, ``tool.name``
and ``session.id``.

Needs the ``otel`` extra: ``pip install 'llmgine[otel]'``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from llmgine.errors import ConfigurationError, LogFormatError
from llmgine.observability.codec import Envelope, decode

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from llmgine.observability.sinks import Record

__all__ = ["ExportStats", "FinishedSpan", "OTLPExporter", "SpanAssembler", "redact_url"]

logger = logging.getLogger(__name__)

_KINDS = {"LLM": "LLM", "TOOL": "TOOL", "CHAIN": "CHAIN"}
_MAX_VALUE = 64 * 1024
_MAX_OPEN = 100_000


def redact_url(url: str) -> str:
    """``url`` without credentials: a user or password becomes ``***``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


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


def _id(text: str, bits: int) -> int:
    try:
        value = int(text, 16)
        if 0 < value < 2**bits:
            return value
    except ValueError:
        pass
    digest = hashlib.blake2b(text.encode(), digest_size=bits // 8).digest()
    return int.from_bytes(digest, "big") or 1


class SpanExporterLike(Protocol):
    """What OTLPExporter needs of an OpenTelemetry span exporter."""

    def export(self, spans: Any) -> Any:
        """Send spans; return a SpanExportResult."""

    def shutdown(self) -> None:
        """Release the exporter's resources."""


@dataclass
class ExportStats:
    """What an :class:`OTLPExporter` did so far."""

    exported: int = 0
    """Spans the endpoint accepted."""
    failed: int = 0
    """Spans in batches the endpoint refused or could not be reached for."""
    dropped: int = 0
    """Lines dropped because the queue was full (the endpoint too slow or down)."""
    queued: int = 0
    """Lines waiting for the worker."""
    open_spans: int = 0
    """Spans started and not yet ended."""


class OTLPExporter:
    """A bus sink that sends every span to an OTLP/HTTP endpoint.

    Example:
        >>> exporter = OTLPExporter("http://127.0.0.1:6006")  # doctest: +SKIP
        >>> bus = MessageBus(sinks=[exporter])  # doctest: +SKIP

    Args:
        endpoint: The collector's URL; ``/v1/traces`` is added when the URL has no
            path (``http://127.0.0.1:6006`` for Phoenix, ``:4318`` for a collector).
        headers: HTTP headers, e.g. an ``Authorization`` or ``api_key``; never logged.
        service_name: The ``service.name`` resource attribute.
        project_name: The Phoenix project (``openinference.project.name``).
        max_queue: Lines held while the endpoint is slow; beyond, lines are dropped.
        batch_size: Spans per export request.
        timeout: Seconds one export request may take.
        span_exporter: Another OpenTelemetry ``SpanExporter`` to send through.
    """

    def __init__(
        self,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        service_name: str = "llmgine",
        *,
        project_name: str | None = None,
        max_queue: int = 10_000,
        batch_size: int = 256,
        timeout: float = 5.0,
        span_exporter: SpanExporterLike | None = None,
    ) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        except ImportError:
            raise ConfigurationError(
                "OTLPExporter needs OpenTelemetry: pip install 'llmgine[otel]'"
            ) from None
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"OTLP endpoint {redact_url(endpoint)!r} is not an http(s) URL, "
                "e.g. http://127.0.0.1:6006"
            )
        headers = dict(headers or {})
        if parts.username is not None:
            # Credentials move from the URL into a header: URLs end up in log messages.
            user = unquote(parts.username)
            secret = unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{secret}".encode()).decode()
            headers.setdefault("Authorization", f"Basic {token}")
            host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
            parts = parts._replace(netloc=host)
        if parts.path in ("", "/"):
            parts = parts._replace(path="/v1/traces")
        self.endpoint = urlunsplit(parts)
        self._headers = headers
        self._timeout = timeout
        self._owned = span_exporter is None  # ours to close; a given one is the caller's
        self._exporter: SpanExporterLike | None = span_exporter
        resource: dict[str, str] = {"service.name": service_name}
        if project_name is not None:
            resource["openinference.project.name"] = project_name
        self._resource = Resource.create(resource)
        self._scope = InstrumentationScope("llmgine")
        self._assembler = SpanAssembler()
        self._queue: deque[Record | bytes] = deque()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._stats = ExportStats()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._counter = itertools.count(1)
        self._accepted = 0
        self._handled = 0
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._last_warning = 0.0

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"OTLPExporter({redact_url(self.endpoint)!r}, exported={s.exported}, "
            f"failed={s.failed}, dropped={s.dropped})"
        )

    @property
    def name(self) -> str:
        """How the bus names this sink in its reports (no credentials)."""
        return f"OTLPExporter({redact_url(self.endpoint)})"

    @property
    def stats(self) -> ExportStats:
        """Counts so far: exported, failed, dropped, queued, open spans."""
        with self._lock:
            return ExportStats(
                exported=self._stats.exported,
                failed=self._stats.failed,
                dropped=self._stats.dropped,
                queued=len(self._queue),
                open_spans=self._assembler.open_spans,
            )

    # ---------------------------------------------------------------- the sink protocol

    def write(self, record: Record | bytes) -> None:
        """Take one accepted message (or an encoded log line); never blocks.

        Only spans matter, but every message is queued: a command's fields, a result,
        a model's reply become the ``input.value``/``output.value`` of its span. The
        line is encoded and decoded by the worker, not here. When the queue is full
        the message is dropped and counted.
        """
        if len(self._queue) >= self._max_queue:
            with self._lock:
                self._stats.dropped += 1
            self._warn("queue full")
            return
        self._queue.append(record)
        accepted = next(self._counter)  # atomic under the GIL: writers may be on other threads
        if accepted > self._accepted:
            self._accepted = accepted
        if self._worker is None:
            self._start_worker()

    def flush(self) -> None:
        """Ask the worker to export what it holds now; returns at once."""
        self._wake.set()

    def force_flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every line written so far is exported (or failed); ``False`` on timeout."""
        target = self._accepted
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self._handled >= target, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Export what is queued (waiting at most ``timeout`` seconds); stop the worker.

        What the endpoint has not taken by then is counted as dropped. A later
        ``write`` starts a new worker (a bus can be started again).
        """
        worker = self._worker
        if worker is None:
            self._release()
            return
        if not self.force_flush(timeout):
            with self._lock:
                self._stats.dropped += len(self._queue)
            self._queue.clear()
            self._warn("closed before the endpoint took everything")
        self._stopping = True
        self._wake.set()
        worker.join(timeout=1.0)
        with self._lock:
            self._worker = None
            self._stopping = False
        self._release()

    def _release(self) -> None:
        """Close the HTTP exporter we made (a later export makes a new one)."""
        if self._owned and self._exporter is not None:
            self._exporter.shutdown()
            self._exporter = None

    def _span_exporter(self) -> SpanExporterLike:
        if self._exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self._exporter = OTLPSpanExporter(
                endpoint=self.endpoint, headers=self._headers, timeout=self._timeout
            )
        return self._exporter

    # ---------------------------------------------------------------- replay

    def export_lines(self, lines: Iterable[bytes]) -> int:
        """Send the spans of recorded log lines, waiting for each batch; return how many.

        This is the replay path (``python -m llmgine export``): no queue, no drops.
        Call :meth:`close` when done.
        """
        batch: list[ReadableSpan] = []
        sent = 0
        for line in lines:
            span = self._assemble(line)
            if span is not None:
                batch.append(span)
            if len(batch) >= self._batch_size:
                sent += self._export(batch)
                batch = []
        return sent + (self._export(batch) if batch else 0)

    # ---------------------------------------------------------------- the worker

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="llmgine-otlp", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            batch: list[ReadableSpan] = []
            handled = 0
            while self._queue:
                span = self._assemble(self._queue.popleft())
                handled += 1
                if span is not None:
                    batch.append(span)
                if len(batch) >= self._batch_size:
                    self._export(batch)
                    batch = []
            if batch:
                self._export(batch)
            with self._done:
                self._handled += handled
                self._done.notify_all()
            if self._stopping and not self._queue:
                return

    def _assemble(self, item: Record | bytes) -> ReadableSpan | None:
        try:
            envelope = decode(item if isinstance(item, bytes | str) else item.line)
        except LogFormatError:
            return None
        finished = self._assembler.add(envelope)
        return None if finished is None else self._readable(finished)

    def _readable(self, span: FinishedSpan) -> ReadableSpan:
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        trace_id = _id(span.trace_id, 128)
        flags = TraceFlags(TraceFlags.SAMPLED)
        context = SpanContext(trace_id, _id(span.span_id, 64), is_remote=False, trace_flags=flags)
        parent = None
        if span.parent_id is not None:
            parent = SpanContext(trace_id, _id(span.parent_id, 64), is_remote=False)
        code = {"OK": StatusCode.OK, "ERROR": StatusCode.ERROR}.get(span.status, StatusCode.UNSET)
        status = Status(code, span.status_message if code is StatusCode.ERROR else None)
        return ReadableSpan(
            name=span.name,
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=span.attributes,
            events=[Event(name, attrs, ns) for name, ns, attrs in span.events],
            kind=SpanKind.CLIENT if span.kind == "LLM" else SpanKind.INTERNAL,
            status=status,
            start_time=span.start_ns,
            end_time=span.end_ns,
            instrumentation_scope=self._scope,
        )

    def _export(self, batch: list[ReadableSpan]) -> int:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            ok = self._span_exporter().export(batch) is SpanExportResult.SUCCESS
        except Exception:  # an exporter bug must not kill the worker
            logger.exception("llmgine: the OTLP exporter raised")
            ok = False
        with self._lock:
            if ok:
                self._stats.exported += len(batch)
            else:
                self._stats.failed += len(batch)
        if not ok:
            self._warn(f"{len(batch)} span(s) not accepted")
        return len(batch) if ok else 0

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._last_warning < 10.0:
            return
        self._last_warning = now
        s = self.stats
        logger.warning(
            "llmgine: OTLP export to %s: %s (exported %d, failed %d, dropped %d)",
            redact_url(self.endpoint),
            what,
            s.exported,
            s.failed,
            s.dropped,
        )
