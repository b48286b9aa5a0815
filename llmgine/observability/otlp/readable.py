"""A :class:`~llmgine.observability.otlp.spans.FinishedSpan` as OpenTelemetry's ``ReadableSpan``.

Ids that are not hexadecimal numbers of the right width (a hand-made log) are
hashed into one, so that the same id always gives the same span.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from llmgine.observability.otlp.spans import FinishedSpan

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["to_readable"]


def _id(text: str, bits: int) -> int:
    try:
        value = int(text, 16)
        if 0 < value < 2**bits:
            return value
    except ValueError:
        pass
    digest = hashlib.blake2b(text.encode(), digest_size=bits // 8).digest()
    return int.from_bytes(digest, "big") or 1


def to_readable(span: FinishedSpan, resource: Any, scope: Any) -> ReadableSpan:
    """Return ``span`` as a ``ReadableSpan`` of ``resource`` and instrumentation ``scope``."""
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
        resource=resource,
        attributes=span.attributes,
        events=[Event(name, attrs, ns) for name, ns, attrs in span.events],
        kind=SpanKind.CLIENT if span.kind == "LLM" else SpanKind.INTERNAL,
        status=status,
        start_time=span.start_ns,
        end_time=span.end_ns,
        instrumentation_scope=scope,
    )
