"""The two threads behind :class:`~llmgine.observability.otlp.OTLPExporter`.

Lines wait in a queue bounded in bytes (and lines); the *builder* thread turns them
into spans and fills the next batch; the *sender* thread sends a batch when it is
full, when a flush asks for it, or a short while after its first span. A batch being
sent never stops the building of the next one, and the builder waits (never
drops) while the next batch is full.

A batch the endpoint refuses (or cannot be reached for) is kept and sent again,
after 0.25 s, 0.5 s, ... up to 5 s, until the endpoint takes it or the pipeline is
closed: an outage costs no span as long as the queue holds what arrives meanwhile.
The kept batch counts in the queue's byte bound; when the two do not fit, the
oldest kept spans are dropped first. What is dropped is counted. Neither thread
ever dies of an exception: ``build`` and ``send`` are given by the exporter, which
catches, logs and counts.

One :class:`SpanPipeline` serves one run of a bus; a later run gets a new one, so a
send stuck on a dead endpoint cannot touch the next run's state: once closed, a
pipeline counts nothing more and its threads end (a send in progress when it was
closed ends with that request's timeout).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["SpanPipeline"]

logger = logging.getLogger("llmgine.observability.otlp")

Build = Callable[[bytes], "tuple[Any, int] | None"]
"""One line to (span, its size in bytes) if it ends a span; never raises."""
Send = Callable[[list[Any]], bool]
"""Send one batch; ``True`` when the endpoint took it. Never raises."""
Lost = Callable[[int, int, str], None]
"""Told (lines dropped, spans given up, why) whenever something is lost."""

_FIRST_RETRY = 0.25
_LAST_RETRY = 5.0


class SpanPipeline:
    """Queue lines, build spans and send them in batches on two daemon threads.

    Args:
        build: Turns a line into ``(span, size)`` or ``None``; must not raise.
        send: Sends a batch of spans, ``True`` if accepted; must not raise.
        on_sent: Called with (spans, whether the endpoint accepted them) for each batch.
        on_lost: Called with (lines dropped, spans given up, why).
        max_lines: Lines the queue may hold.
        max_bytes: Bytes of lines (and of a kept batch's spans) the queue may hold.
        batch_size: Spans per batch.
        max_batch_bytes: Bytes of spans per batch (the spans' estimated size).
        linger: Seconds a batch that is not full waits for more spans.
    """

    def __init__(
        self,
        build: Build,
        send: Send,
        on_sent: Callable[[int, bool], None],
        on_lost: Lost,
        *,
        max_lines: int,
        max_bytes: int,
        batch_size: int,
        max_batch_bytes: int,
        linger: float = 0.2,
    ) -> None:
        self._build, self._send, self._on_sent, self._on_lost = build, send, on_sent, on_lost
        self._max_lines, self._max_bytes = max_lines, max_bytes
        self._batch_size, self._max_batch_bytes, self._linger = batch_size, max_batch_bytes, linger
        self._lines: deque[bytes] = deque()
        self._queued_bytes = 0
        self._held: deque[tuple[Any, int]] = deque()  # a refused batch, sent again
        self._held_bytes = 0
        self._lock = threading.Lock()  # the line queue, the held batch's size
        self._wake = threading.Event()  # lines arrived, a flush, or the end
        self._cond = threading.Condition()  # the batches and the counts below
        self._next: list[tuple[Any, int]] = []
        self._next_lines = 0  # lines the next batch covers (those without a span too)
        self._next_bytes = 0
        self._held_lines = 0
        self._in_flight = 0  # spans of the batch being sent now
        self._accepted = 0
        self._handled = 0  # lines whose spans were sent (or given up), or that had none
        self._flush_to = 0
        self._stopping = False
        self._abandoned = False
        self._builder = threading.Thread(target=self._build_loop, name="llmgine-otlp", daemon=True)
        self._sender = threading.Thread(
            target=self._send_loop, name="llmgine-otlp-send", daemon=True
        )
        self._builder.start()
        self._sender.start()

    @property
    def queued(self) -> tuple[int, int, int]:
        """Lines and bytes waiting in the queue (a kept batch's bytes too), spans kept."""
        with self._lock:
            return len(self._lines), self._queued_bytes + self._held_bytes, len(self._held)

    def put(self, line: bytes) -> bool:
        """Queue ``line``; ``False`` (and nothing queued) when the queue is full."""
        size = len(line)
        with self._lock:
            used = self._queued_bytes + self._held_bytes
            if used + size > self._max_bytes or len(self._lines) >= self._max_lines:
                return False
            self._queued_bytes += size
            self._lines.append(line)
            self._accepted += 1
            first = len(self._lines) == 1
        if first:
            self._wake.set()
        return True

    def flush(self) -> None:
        """Send what was queued so far without waiting for full batches; returns at once."""
        with self._cond:
            self._flush_to = self._accepted
            self._cond.notify_all()
        self._wake.set()

    def wait(self, timeout: float | None) -> bool:
        """Flush, then wait until everything queued so far was sent; ``False`` on timeout."""
        self.flush()
        with self._cond:
            target = self._flush_to
            return self._cond.wait_for(lambda: self._handled >= target, timeout)

    def close(self, timeout: float) -> bool:
        """Send what is queued (waiting at most ``timeout`` s) and stop; ``False`` if some was lost.

        What is not sent by then is given up and reported to ``on_lost`` (lines
        still queued, spans kept or being sent); from then on nothing is counted
        and the threads end without waiting for a send stuck on the endpoint.
        """
        done = self.wait(max(timeout, 0.0))
        with self._cond:
            if not done:
                self._abandoned = True
                with self._lock:
                    lines = len(self._lines) + self._next_lines
                    spans = len(self._held) + self._in_flight
                    self._lines.clear()
                    self._held.clear()
                    self._queued_bytes = self._held_bytes = 0
                self._next, self._next_lines, self._next_bytes = [], 0, 0
                if lines or spans:
                    self._on_lost(lines, spans, "closed before the endpoint took them")
            self._stopping = True
            self._cond.notify_all()
        self._wake.set()
        self._builder.join(timeout=1.0)
        if done:
            self._sender.join(timeout=1.0)
        return done

    # ---------------------------------------------------------------- the threads

    def _take(self) -> bytes | None:
        with self._lock:
            if not self._lines:
                return None
            line = self._lines.popleft()
            self._queued_bytes -= len(line)
            return line

    def _build_loop(self) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            while (line := self._take()) is not None:
                try:
                    built = self._build(line)
                except Exception:  # build() catches its own; this thread must outlive a bug
                    logger.exception("llmgine: building a span failed; the line is skipped")
                    built = None
                with self._cond:
                    while built is not None and self._next_full() and not self._abandoned:
                        self._cond.wait(0.5)  # the sender is behind: wait, the queue absorbs
                    if self._abandoned:
                        return
                    if built is not None:
                        self._next.append(built)
                        self._next_bytes += built[1]
                    self._next_lines += 1
                    if self._next_lines == 1 or self._next_full() or self._flush_to > self._handled:
                        self._cond.notify_all()
            with self._cond:
                if self._stopping or self._abandoned:
                    self._cond.notify_all()
                    return

    def _next_full(self) -> bool:
        return len(self._next) >= self._batch_size or self._next_bytes >= self._max_batch_bytes

    def _take_batch(self, retry_at: float | None) -> tuple[list[tuple[Any, int]], int] | None:
        """The kept batch once its retry is due, else the next one when due; ``None`` to end."""
        since = None
        while True:
            if self._abandoned:
                return None
            if self._held_lines:
                assert retry_at is not None
                if time.monotonic() >= retry_at:
                    with self._lock:
                        batch = list(self._held)
                        self._held.clear()
                        self._held_bytes = 0
                    covered, self._held_lines = self._held_lines, 0
                    return batch, covered
                self._cond.wait(retry_at - time.monotonic())
                continue
            if self._next_lines:
                since = since or time.monotonic()
                due = (
                    self._next_full()
                    or self._stopping
                    or self._flush_to > self._handled
                    or time.monotonic() - since >= self._linger
                )
                if due:
                    batch, covered = self._next, self._next_lines
                    self._next, self._next_lines, self._next_bytes = [], 0, 0
                    self._cond.notify_all()  # room in the next batch
                    return batch, covered
            elif self._stopping and not self._builder.is_alive():
                return None
            self._cond.wait(self._linger if since is not None else 0.5)

    def _send_loop(self) -> None:
        retries, retry_at = 0, None
        while True:
            with self._cond:
                taken = self._take_batch(retry_at)
                if taken is None:
                    return
                batch, covered = taken
                self._in_flight = len(batch)
            ok = True
            if batch:
                try:
                    ok = self._send([span for span, _ in batch])
                except Exception:  # send() catches its own; this thread must outlive a bug
                    logger.exception("llmgine: sending %d span(s) failed", len(batch))
                    ok = False
            with self._cond:
                self._in_flight = 0
                if self._abandoned:
                    return  # close() counted this batch: the counts are final
                if batch:
                    self._on_sent(len(batch), ok)
                if ok:
                    retries = 0
                    self._handled += covered
                else:
                    retry_at = time.monotonic() + min(_FIRST_RETRY * 2**retries, _LAST_RETRY)
                    retries += 1
                    self._keep(batch, covered)
                self._cond.notify_all()

    def _keep(self, batch: list[tuple[Any, int]], covered: int) -> None:
        """Hold a refused batch for a retry, dropping its oldest spans beyond the byte bound."""
        kept = deque(batch)
        dropped = 0
        with self._lock:
            room = self._max_bytes - self._queued_bytes
            size = sum(s for _, s in kept)
            while kept and size > room:
                size -= kept.popleft()[1]
                dropped += 1
            self._held.extend(kept)
            self._held_bytes = size
        if kept:
            self._held_lines = covered
        else:
            self._handled += covered
        if dropped:
            self._on_lost(0, dropped, "the endpoint is down and the queue is full")
