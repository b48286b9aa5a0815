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
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from llmgine._urls import redact_url
from llmgine.errors import ConfigurationError, LogFormatError
from llmgine.observability.codec import decode
from llmgine.observability.otlp.spans import FinishedSpan, SpanAssembler

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from llmgine.observability.sinks import Record

__all__ = ["ExportStats", "OTLPExporter", "SpanExporterLike", "redact_url"]

logger = logging.getLogger("llmgine.observability.otlp")


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
