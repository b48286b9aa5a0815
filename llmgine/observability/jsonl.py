"""The JSONL log: a sink writing one JSON line per command and event, in order."""

from __future__ import annotations

import io
import logging
import os
import threading
import time
import weakref
from collections import deque
from pathlib import Path

from llmgine.observability.sinks import Record

__all__ = ["JsonlLog"]

logger = logging.getLogger(__name__)

_LOOK_EVERY = 64
"""Lines between two looks at the clock and the line bound."""

_FIRST_RETRY = 0.1
_LAST_RETRY = 5.0

_logged: dict[type, bool] = {}
"""Message classes and whether they are written (``log_to_file``): read once per class."""

_live_writers: weakref.WeakSet[_Writer] = weakref.WeakSet()
_fork_hook_installed = False


def _forget_parent_lines() -> None:
    """In a forked child: the parent's buffered lines are the parent's to write."""
    for writer in list(_live_writers):
        writer.after_fork()


class _Writer:
    """The file, its buffer and its lock: what must outlive the ``JsonlLog`` to flush at exit."""

    __slots__ = (
        "__weakref__",
        "backoff",
        "buffer",
        "buffered_bytes",
        "countdown",
        "extra_lines",
        "failure",
        "file",
        "last_flush",
        "lines_written",
        "lock",
        "path",
        "retry_at",
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        self.buffer: deque[bytes] = deque()
        self.buffered_bytes = 0
        self.extra_lines = 0
        """Newlines in the buffer beyond one a chunk (changed under the lock only): most
        chunks are one line, so a flush counts its lines without reading them."""
        self.lines_written = 0
        self.file: io.FileIO | None = None
        self.lock = threading.Lock()
        self.last_flush = time.monotonic()
        self.countdown = 1  # lines until JsonlLog looks at the bounds and the clock again
        self.failure: OSError | None = None
        self.retry_at = 0.0
        self.backoff = _FIRST_RETRY

    def after_fork(self) -> None:
        self.buffer.clear()
        self.buffered_bytes = 0
        self.extra_lines = 0
        self.lock = threading.Lock()
        self.file = None  # the child's copy of the descriptor closes with the object

    def pending_lines(self) -> int:
        return sum(chunk.count(b"\n") for chunk in tuple(self.buffer))

    def open(self) -> io.FileIO:
        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = io.FileIO(self.path, "a")
        return self.file

    def flush(self, *, force: bool = False) -> None:
        """Write every buffered line; on failure keep every line not wholly written.

        While failing, a flush within the retry delay (0.1 s, doubling up to 5 s)
        does not touch the file and raises again, unless ``force``.
        """
        with self.lock:  # one flush at a time; writers never wait for it
            now = time.monotonic()
            self.last_flush = now
            self.countdown = 1  # the next line looks at the clock
            if not self.buffer:
                return
            failure = self.failure
            if failure is not None and not force and now < self.retry_at:
                raise OSError(failure.errno, f"{failure.strerror} (retrying soon)")
            try:
                file = self.open()
                size = os.fstat(file.fileno()).st_size
            except OSError as exc:
                self._failed(exc)
                raise
            pop = self.buffer.popleft
            chunks = len(self.buffer)
            chunk = b"".join([pop() for _ in range(chunks)])
            lines = chunks + self.extra_lines  # what else is appended meanwhile is one line each
            self.extra_lines = 0
            self.buffered_bytes = max(0, self.buffered_bytes - len(chunk))
            written = False
            try:
                view = memoryview(chunk)
                while view:
                    view = view[file.write(view) or 0 :]
                written = True
            except OSError as exc:
                self._failed(exc)
                raise
            finally:  # any exception, an interrupt too: keep what did not reach the file
                if not written:
                    self._keep(file, chunk, size, lines)
            self.lines_written += lines
            self.failure = None
            self.backoff = _FIRST_RETRY

    def _failed(self, exc: OSError) -> None:
        self.failure = exc
        self.retry_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, _LAST_RETRY)

    def _keep(self, file: io.FileIO, chunk: bytes, size: int, lines: int) -> None:
        """After a failed write: keep the whole lines, put the rest back, first in line.

        What reached the file is read from its size, not from a count an interrupt
        may have cut short; a partly written last line is truncated away so the file
        holds whole lines only (if it cannot be, its rest is written first next time).
        """
        try:
            reached = os.fstat(file.fileno()).st_size - size
        except OSError:
            reached = -1
        if not 0 <= reached <= len(chunk):  # unknown, or someone else appended: keep it all
            self.buffer.appendleft(chunk)
            self.buffered_bytes += len(chunk)
            self.extra_lines += lines - 1
            return
        whole = chunk.rfind(b"\n", 0, reached) + 1
        if whole < reached:
            try:
                os.ftruncate(file.fileno(), size + whole)
            except OSError:
                whole = reached  # the torn line's rest goes first on the next write
        self.lines_written += chunk.count(b"\n", 0, whole)
        rest = chunk[whole:]
        if rest:
            self.buffer.appendleft(rest)
            self.buffered_bytes += len(rest)
            self.extra_lines += rest.count(b"\n") - 1

    def close(self) -> None:
        try:
            self.flush(force=True)
        finally:
            with self.lock:
                if self.file is not None:
                    self.file.close()
                    self.file = None

    def close_at_exit(self) -> None:
        try:
            self.close()
        except OSError as exc:
            logger.error(
                "%d log lines could not be written to %s: %s", self.pending_lines(), self.path, exc
            )


class JsonlLog:
    """An append-only JSONL file with whole-line buffering: the bus's file sink.

    Lines wait in memory and are written in whole-line chunks, so a reader never
    sees half a line: when the buffer holds ``max_buffer_bytes`` or
    ``max_buffered_lines``; on a write that finds the last flush ``flush_interval``
    seconds old (the clock is read on the first buffered line and every 64th); and
    whenever the bus idles, waits, stops, or its ~100 ms timer fires while busy.
    The file opens on the first flush (its directory is created), so lines written
    at any time reach it.

    A write that fails (disk full, file-size limit, permission) keeps every line
    and truncates a partly written chunk back to its last whole line; the next
    flush retries. Lines still buffered when the process exits normally are
    flushed then; a forked child never writes its parent's buffered lines. Safe to
    write from several threads.

    Args:
        path: The file to append to.
        max_buffer_bytes: Flush once this many bytes are buffered.
        max_buffered_lines: Flush once this many lines are buffered.
        flush_interval: Flush on a write when the last flush is this many seconds old.
    """

    name = "jsonl"

    def __init__(
        self,
        path: Path,
        *,
        max_buffer_bytes: int = 1 << 20,
        max_buffered_lines: int = 4096,
        flush_interval: float = 0.1,
    ) -> None:
        global _fork_hook_installed
        self._writer = _Writer(Path(path))
        self.max_buffer_bytes = max_buffer_bytes
        self.max_buffered_lines = max_buffered_lines
        self.flush_interval = flush_interval
        _live_writers.add(self._writer)
        if not _fork_hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forget_parent_lines)
            _fork_hook_installed = True
        weakref.finalize(self, self._writer.close_at_exit)

    def __repr__(self) -> str:
        return f"JsonlLog({str(self.path)!r}, {self.lines_written} lines written)"

    @property
    def path(self) -> Path:
        """The file the log appends to."""
        return self._writer.path

    @property
    def lines_written(self) -> int:
        """Lines written to the file so far."""
        return self._writer.lines_written

    @property
    def pending_lines(self) -> int:
        """Lines accepted but not yet in the file."""
        return self._writer.pending_lines()

    @property
    def is_open(self) -> bool:
        """Whether the file is open for writing."""
        return self._writer.file is not None

    def open(self) -> None:
        """Open (or create) the file now and write what is buffered."""
        self._writer.open()
        self.flush()

    def write(self, record: Record | bytes) -> None:
        """Buffer one message's line (a :class:`Record`, or a UTF-8 line ending in a newline).

        Messages whose class sets ``log_to_file = False`` are not written.
        """
        if isinstance(record, bytes):
            line = record
            extra = line.count(b"\n") - 1
            if extra:  # not one line: counted under the lock, so no flush miscounts it
                writer = self._writer
                with writer.lock:
                    writer.buffer.append(line)
                    writer.buffered_bytes += len(line)
                    writer.extra_lines += extra
                self._flush_if_due()
                return
        else:
            cls = type(record.message)
            logged = _logged.get(cls)
            if logged is None:
                logged = _logged[cls] = bool(getattr(cls, "log_to_file", True))
            if not logged:
                return
            line = record.line
        writer = self._writer
        writer.buffer.append(line)  # a deque: atomic, so any thread may write without a lock
        writer.buffered_bytes += len(line)
        writer.countdown -= 1
        if writer.countdown <= 0 or writer.buffered_bytes >= self.max_buffer_bytes:
            self._flush_if_due()

    def _flush_if_due(self) -> None:
        """Flush when a bound is reached or the last flush is old; else look again later.

        Called on the first line after a flush and then every 64th (the clock is not
        free, and this is the hot path), and whenever the byte bound is reached.
        """
        writer = self._writer
        size = len(writer.buffer)
        writer.countdown = min(_LOOK_EVERY, self.max_buffered_lines - size)
        now = time.monotonic()
        if (
            writer.buffered_bytes >= self.max_buffer_bytes
            or size >= self.max_buffered_lines
            or now - writer.last_flush >= self.flush_interval
        ) and (writer.failure is None or now >= writer.retry_at):
            writer.flush()

    def flush(self) -> None:
        """Write every buffered line to the file now.

        Raises:
            OSError: The file cannot be opened or written; every line is kept for a retry.
        """
        self._writer.flush(force=True)

    def flush_due(self) -> None:
        """Flush, unless the last write failed so recently that a retry must wait.

        The bus calls this when it idles and on its timer, so a full disk is not
        retried on every event. Within the wait it raises the last error again.
        """
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the file; a later write reopens it.

        Raises:
            OSError: The buffered lines could not be written; they are kept for a retry.
        """
        self._writer.close()
