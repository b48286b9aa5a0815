"""Send llmgine's spans to any OTLP/HTTP endpoint: Arize Phoenix, Jaeger, Langfuse, Logfire.

:class:`OTLPExporter` is a bus sink. The bus hands it every accepted message;
``write`` keeps only the lines a span is built from (llmgine's ``TraceEvent``,
command, result, LLM and tool lines, recognised by module and class name, never a
user's class of the same name), appends them to a queue bounded in bytes
(``max_queue_bytes``, 16 MiB by default) and returns. One thread pairs each span's
start and end ``TraceEvent`` into one OpenTelemetry span (same trace and span ids,
parent, times, status, an ``exception`` event for errors), another exports
batches with ``opentelemetry-sdk``'s OTLP/HTTP exporter while the next is built
(:mod:`.pipeline`). An endpoint that is slow or down never slows the bus: a batch
it refuses (or cannot be reached for) is kept and sent again with a growing pause
while the queue holds what arrives meanwhile; when the queue is full lines are
dropped, counted in :attr:`OTLPExporter.stats` and logged. ``close`` gives the
endpoint ``timeout`` seconds (one deadline for all the exporters a bus closes),
then counts what it could not send and says so once. A line that cannot be read
is skipped and counted; an error while building or sending is logged with its
traceback and counted, and the threads go on.

Credentials never reach logs (:mod:`.endpoint`): a ``user:password@`` in the URL
becomes a Basic ``Authorization`` header, and the URL's secrets are hidden in every
record of OpenTelemetry's, urllib3's and requests' loggers, as in our own messages.

Attributes keep llmgine's OpenTelemetry GenAI names (``gen_ai.*``) and add the
OpenInference names Phoenix reads: ``openinference.span.kind`` (LLM, TOOL,
CHAIN), ``llm.model_name``, ``llm.provider``, ``llm.token_count.prompt`` /
``completion`` / ``total``, ``input.value``, ``output.value``, ``tool.name``
and ``session.id``.

Needs the ``otel`` extra: ``pip install 'llmgine[otel]'``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from llmgine._urls import redact_url
from llmgine.errors import ConfigurationError, LogFormatError
from llmgine.observability.codec import decode
from llmgine.observability.otlp.endpoint import otlp_endpoint
from llmgine.observability.otlp.pipeline import SpanPipeline
from llmgine.observability.otlp.readable import to_readable
from llmgine.observability.otlp.spans import SPAN_MESSAGES, SpanAssembler

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from llmgine.observability.sinks import Record

__all__ = ["ExportStats", "OTLPExporter", "SpanExporterLike", "redact_url"]

logger = logging.getLogger("llmgine.observability.otlp")

DEFAULT_MAX_QUEUE_BYTES = 16 * 1024 * 1024
"""Bytes of lines held while the endpoint is slow or down; beyond, lines are dropped."""
_MAX_BATCH_BYTES = 4 * 1024 * 1024
_HEAD = re.compile(rb'\{"kind":"(command|event)","type":"([^"\\]*)","module":"([^"\\]*)"')
"""The start of an envelope line as the codec writes it."""
_WANTED = frozenset((module.encode(), name.encode()) for module, name in SPAN_MESSAGES)


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
    """Spans given up: still refused (or being sent) at close, or dropped from a kept batch."""
    dropped: int = 0
    """Lines dropped: the queue was full, or still queued at close."""
    queued: int = 0
    """Lines waiting to be built into spans."""
    open_spans: int = 0
    """Spans started and not yet ended."""
    queued_bytes: int = 0
    """Bytes of the lines waiting (at most ``max_queue_bytes``)."""
    skipped: int = 0
    """Lines that could not be read (not an envelope, or a span line with wrong fields)."""
    errors: int = 0
    """Errors while building or sending spans, each logged with its traceback."""
    retrying: int = 0
    """Spans of a refused batch, kept and sent again until the endpoint takes them."""


class OTLPExporter:
    """A bus sink that sends every span to an OTLP/HTTP endpoint.

    Example:
        >>> exporter = OTLPExporter("http://127.0.0.1:6006")  # doctest: +SKIP
        >>> bus = MessageBus(sinks=[exporter])  # doctest: +SKIP

    Args:
        endpoint: The collector's URL; ``/v1/traces`` is added when the URL has no
            path (``http://127.0.0.1:6006`` for Phoenix, ``:4318`` for a collector).
            Credentials in it (``user:pw@``, ``?api_key=``) are never logged.
        headers: HTTP headers, e.g. an ``Authorization`` or ``api_key``; never logged.
        service_name: The ``service.name`` resource attribute.
        project_name: The Phoenix project (``openinference.project.name``).
        max_queue: Lines held while the endpoint is slow; beyond, lines are dropped.
        batch_size: Spans per export request.
        timeout: Seconds one export request may take.
        span_exporter: Another OpenTelemetry ``SpanExporter`` to send through.
        max_queue_bytes: Bytes of lines held while the endpoint is slow (16 MiB);
            beyond, lines are dropped and counted. Only span lines are held.

    Attributes:
        endpoint: Where spans go, with its credentials hidden.
    """

    def __init__(
        self,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        service_name: str = "llmgine",
        *,
        project_name: str | None = None,
        max_queue: int = 100_000,
        batch_size: int = 512,
        timeout: float = 5.0,
        span_exporter: SpanExporterLike | None = None,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
    ) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        except ImportError:
            raise ConfigurationError(
                "OTLPExporter needs OpenTelemetry: pip install 'llmgine[otel]'"
            ) from None
        # Hidden from now on wherever a library logs it (the filters stay for the process).
        self._url, headers = otlp_endpoint(endpoint, headers)
        self.endpoint = redact_url(self._url)
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
        self._max_queue = max_queue
        self._max_queue_bytes = max_queue_bytes
        self._batch_size = batch_size
        self._stats = ExportStats()
        self._lock = threading.Lock()
        self._pipeline: SpanPipeline | None = None
        self._last_warning: dict[str, float] = {}
        self._close_by: float | None = None
        self._dropping = self._refused = False

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"OTLPExporter({self.endpoint!r}, exported={s.exported}, "
            f"failed={s.failed}, dropped={s.dropped})"
        )

    @property
    def name(self) -> str:
        """How the bus names this sink in its reports (no credentials)."""
        return f"OTLPExporter({self.endpoint})"

    @property
    def stats(self) -> ExportStats:
        """Counts so far: exported, failed, dropped, queued (lines and bytes), open spans."""
        pipeline = self._pipeline
        queued, queued_bytes, retrying = (0, 0, 0) if pipeline is None else pipeline.queued
        with self._lock:
            return ExportStats(
                exported=self._stats.exported,
                failed=self._stats.failed,
                dropped=self._stats.dropped,
                queued=queued,
                open_spans=self._assembler.open_spans,
                queued_bytes=queued_bytes,
                skipped=self._stats.skipped,
                errors=self._stats.errors,
                retrying=retrying,
            )

    # ---------------------------------------------------------------- the sink protocol

    def write(self, record: Record | bytes) -> None:
        """Take one accepted message (or an encoded log line); never blocks.

        Only the lines spans are built from are kept: llmgine's ``TraceEvent``,
        result, LLM and tool events (by module and class name) and every command
        (its fields become the ``input.value`` of its span). When the queue is full
        the line is dropped and counted.
        """
        if isinstance(record, bytes):
            head = _HEAD.match(record)
            if head is not None and head[1] != b"command" and (head[3], head[2]) not in _WANTED:
                return
            line = record
        else:
            cls = type(record.message)
            if record.kind != "command" and (cls.__module__, cls.__name__) not in SPAN_MESSAGES:
                return
            line = record.line
        pipeline = self._pipeline or self._start()
        if pipeline.put(line):
            if self._dropping:  # the first line taken after a run of drops
                self._dropping = False
                logger.info("llmgine: OTLP export to %s takes lines again", self.endpoint)
        elif self._dropping:
            with self._lock:
                self._stats.dropped += 1
        else:  # one warning per run of drops, not one per line
            self._dropping = True
            self._dropped(1, "queue full, lines are dropped until it has room")

    def flush(self) -> None:
        """Ask the threads to export what they hold now; returns at once."""
        if self._pipeline is not None:
            self._pipeline.flush()

    def force_flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every span written so far is exported; ``False`` on timeout.

        While the endpoint refuses, its batch is kept and sent again, so this waits
        for the endpoint (or the timeout).
        """
        pipeline = self._pipeline
        return True if pipeline is None else pipeline.wait(timeout)

    def begin_close(self, timeout: float = 5.0) -> None:
        """Start the ``timeout`` of a :meth:`close` that follows; returns at once.

        A bus calls this on each of its sinks before closing them one by one, so
        that exporters waiting for a dead endpoint share one deadline.
        """
        self._close_by = time.monotonic() + timeout
        self.flush()

    def close(self, timeout: float = 5.0) -> None:
        """Export what is queued (waiting at most ``timeout`` seconds); stop the threads.

        What the endpoint has not taken by then is counted (queued lines as
        ``dropped``, spans refused or being sent as ``failed``) and logged once; the
        counts are final and the threads end (one stuck in a request when its
        timeout ends). A later ``write`` starts new threads (a bus can be started again).
        """
        deadline = time.monotonic() + timeout
        if self._close_by is not None:
            deadline, self._close_by = min(deadline, self._close_by), None
        with self._lock:
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.close(deadline - time.monotonic())  # counts what it could not send
        self._release()

    def _start(self) -> SpanPipeline:
        with self._lock:
            if self._pipeline is None:
                self._pipeline = SpanPipeline(
                    self._build,
                    self._export,
                    self._sent,
                    self._lost,
                    max_lines=self._max_queue,
                    max_bytes=self._max_queue_bytes,
                    batch_size=self._batch_size,
                    max_batch_bytes=_MAX_BATCH_BYTES,
                )
            return self._pipeline

    def _dropped(self, lines: int, why: str) -> None:
        with self._lock:
            self._stats.dropped += lines
        self._warn(why, key=why)

    def _sent(self, spans: int, ok: bool) -> None:
        """The pipeline's word on one batch (never after it was closed)."""
        if ok:
            with self._lock:
                self._stats.exported += spans
            if self._refused:  # a new outage is told again at once
                self._refused = False
                self._last_warning.pop("refused", None)
                logger.info("llmgine: OTLP export to %s takes spans again", self.endpoint)
        else:
            self._refused = True
            self._warn(f"{spans} span(s) not accepted, kept and sent again", key="refused")

    def _lost(self, lines: int, spans: int, why: str) -> None:
        with self._lock:
            self._stats.dropped += lines
            self._stats.failed += spans
        what = f"{why}: {spans} span(s) given up, {lines} queued line(s) dropped"
        if why.startswith("closed"):  # once per close, never held back
            self._last_warning.pop(why, None)
        self._warn(what, key=why)

    def _release(self) -> None:
        """Close the HTTP exporter we made (a later export makes a new one)."""
        if self._owned and self._exporter is not None:
            self._exporter.shutdown()
            self._exporter = None

    def _span_exporter(self) -> SpanExporterLike:
        if self._exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self._exporter = OTLPSpanExporter(
                endpoint=self._url, headers=self._headers, timeout=self._timeout
            )
        return self._exporter

    # ---------------------------------------------------------------- replay

    def export_lines(self, lines: Iterable[bytes]) -> int:
        """Send the spans of recorded log lines, waiting for each batch; return how many.

        This is the replay path (``python -m llmgine export``): no queue, no drops.
        Lines that cannot be read are skipped and counted in ``stats.skipped``.
        Call :meth:`close` when done.
        """
        batch: list[ReadableSpan] = []
        sent = 0
        for line in lines:
            if not line.strip():
                continue
            built = self._build(line)
            if built is not None:
                batch.append(built[0])
            if len(batch) >= self._batch_size:
                sent += self._send(batch)
                batch = []
        return sent + (self._send(batch) if batch else 0)

    # ---------------------------------------------------------------- building and sending

    def _build(self, line: bytes) -> tuple[ReadableSpan, int] | None:
        """The span ``line`` ends, with its estimated size; never raises."""
        try:
            finished = self._assembler.add(decode(line))
            if finished is None:
                return None
            size = 256 + sum(len(v) for v in finished.attributes.values() if isinstance(v, str))
            return to_readable(finished, self._resource, self._scope), size
        except LogFormatError as exc:
            with self._lock:
                self._stats.skipped += 1
            logger.debug("llmgine: OTLP export skips a line: %s", exc)
        except Exception:  # a bug or an odd value: this line only, never the thread
            with self._lock:
                self._stats.errors += 1
            self._warn("a line could not be made into a span", exc_info=True)
        return None

    def _send(self, batch: list[ReadableSpan]) -> int:
        """Export one batch once and count it; return how many spans were accepted."""
        ok = self._export(batch)
        with self._lock:
            self._stats.exported += len(batch) if ok else 0
            self._stats.failed += 0 if ok else len(batch)
        if not ok:
            self._warn(f"{len(batch)} span(s) not accepted", key="refused")
        return len(batch) if ok else 0

    def _export(self, batch: list[ReadableSpan]) -> bool:
        """Send one batch; whether the endpoint took it. Never raises."""
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            return self._span_exporter().export(batch) is SpanExportResult.SUCCESS
        except Exception:  # an exporter bug must not kill the thread
            with self._lock:
                self._stats.errors += 1
            self._warn("the exporter raised", key="raised", exc_info=True)
            return False

    def _warn(self, what: str, *, key: str | None = None, exc_info: bool = False) -> None:
        """Log ``what`` as a warning at most every 10 s per ``key``; the others at debug level."""
        now = time.monotonic()
        s = self.stats
        args = (self.endpoint, what, s.exported, s.failed, s.dropped)
        message = "llmgine: OTLP export to %s: %s (exported %d, failed %d, dropped %d)"
        key = key or what
        if now - self._last_warning.get(key, -10.0) < 10.0:
            logger.debug(message, *args, exc_info=exc_info)
            return
        self._last_warning[key] = now
        logger.warning(message, *args, exc_info=exc_info)
