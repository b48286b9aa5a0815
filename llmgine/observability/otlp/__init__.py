"""Send llmgine's spans to any OTLP/HTTP endpoint: Arize Phoenix, Jaeger, Langfuse, Logfire.

:class:`OTLPExporter` (a bus sink) is in :mod:`.exporter`; the pairing of span
start and end lines into spans, with OpenInference attributes, in :mod:`.spans`;
the threads that build, send and retry batches in :mod:`.pipeline`.
Needs the ``otel`` extra: ``pip install 'llmgine[otel]'``.
"""

from llmgine.observability.otlp.exporter import (
    ExportStats,
    OTLPExporter,
    SpanExporterLike,
    redact_url,
)
from llmgine.observability.otlp.spans import FinishedSpan, SpanAssembler

__all__ = [
    "ExportStats",
    "FinishedSpan",
    "OTLPExporter",
    "SpanAssembler",
    "SpanExporterLike",
    "redact_url",
]
