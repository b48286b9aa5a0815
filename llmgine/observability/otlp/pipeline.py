"""The two threads behind :class:`~llmgine.observability.otlp.OTLPExporter`.

Lines wait in a queue bounded in bytes (and lines); the *builder* thread turns them
into spans and fills the next batch; the *sender* thread sends a batch when it is
full, when a flush asks for it, or a short while after its first span. A batch being
sent never stops the building of the next one, and the builder waits (never
drops) while the next batch is full: what the queue cannot hold is the only thing
dropped, and it is counted. Neither thread ever dies of an exception: ``build`` and
``send`` are given by the exporter, which catches, logs and counts.

One :class:`SpanPipeline` serves one run of a bus; a later run gets a new one, so a
send stuck on a dead endpoint cannot touch the next run's state.
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
Send = Callable[[list[Any]], object]
"""Send one batch and count the outcome; never raises."""


class SpanPipeline:
    """Queue lines, build spans and send them in batches on two daemon threads.

    Args:
        build: Turns a line into ``(span, size)`` or ``None``; must not raise.
        send: Sends a batch of spans; must not raise.
        on_drop: Called with the number of lines dropped (queue full, or closed first).
        max_lines: Lines the queue may hold.
        max_bytes: Bytes of lines the queue may hold.
        batch_size: Spans per batch.
        max_batch_bytes: Bytes of spans per batch (the spans' estimated size).
        linger: Seconds a batch that is not full waits for more spans.
    """

    def __init__(
        self,
        build: Build,
        send: Send,
        on_drop: Callable[[int], None],
        *,
        max_lines: int,
        max_bytes: int,
        batch_size: int,
        max_batch_bytes: int,
        linger: float = 0.2,
    ) -> None:
        self._build, self._send, self._on_drop = build, send, on_drop
        self._max_lines, self._max_bytes = max_lines, max_bytes
        self._batch_size, self._max_batch_bytes, self._linger = batch_size, max_batch_bytes, linger
        self._lines: deque[bytes] = deque()
        self._queued_bytes = 0
        self._lock = threading.Lock()  # the line queue's byte count
        self._wake = threading.Event()  # lines arrived, a flush, or the end
        self._cond = threading.Condition()  # the next batch and the counts below
        self._next: list[Any] = []
        self._next_lines = 0  # lines the next batch covers (those without a span too)
        self._next_bytes = 0
        self._accepted = 0
        self._handled = 0  # lines whose spans were sent (or failed), or that had none
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
    def queued(self) -> tuple[int, int]:
        """Lines and bytes waiting in the queue."""
        with self._lock:
            return len(self._lines), self._queued_bytes

    def put(self, line: bytes) -> bool:
        """Queue ``line``; ``False`` (and nothing queued) when the queue is full."""
        size = len(line)
        with self._lock:
            if self._queued_bytes + size > self._max_bytes or len(self._lines) >= self._max_lines:
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

        Lines not sent by then are dropped and counted; a send still stuck on the
        endpoint is left to finish on its daemon thread.
        """
        done = self.wait(timeout)
        with self._cond:
            if not done:
                self._abandoned = True
                with self._lock:
                    lost = len(self._lines) + self._next_lines
                    self._lines.clear()
                    self._queued_bytes = 0
                self._next, self._next_lines, self._next_bytes = [], 0, 0
                if lost:
                    self._on_drop(lost)
            self._stopping = True
            self._cond.notify_all()
        self._wake.set()
        self._builder.join(timeout=1.0)
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
                        self._next.append(built[0])
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

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                since = None
                while True:
                    if self._abandoned:
                        return
                    if self._next_lines:
                        since = since or time.monotonic()
                        due = (
                            self._next_full()
                            or self._stopping
                            or self._flush_to > self._handled
                            or time.monotonic() - since >= self._linger
                        )
                        if due:
                            break
                    elif self._stopping and not self._builder.is_alive():
                        return
                    self._cond.wait(self._linger if since is not None else 0.5)
                batch, covered = self._next, self._next_lines
                self._next, self._next_lines, self._next_bytes = [], 0, 0
                self._cond.notify_all()  # room in the next batch
            if batch:
                try:
                    self._send(batch)
                except Exception:  # send() catches its own; this thread must outlive a bug
                    logger.exception("llmgine: sending %d span(s) failed", len(batch))
            with self._cond:
                self._handled += covered
                self._cond.notify_all()
