"""One ``map`` run: rows sent as ``PromptCommand``s by a fixed pool of senders, never more.

Memory stays bounded: ``concurrency`` senders each take the next row and execute its
prompt; no task exists per row. Rows are made ready a chunk at a time: their templates
filled, and (with a local engine) looked up in the call cache all at once, so a row
finished by an earlier run is answered from there without being sent (a re-run costs a
cache read per row, not a command). A row that fails is an outcome like any other.
Sending stops early for three reasons only: a row ran out of budget (the rows after it
would too; those the cache answers are still answered), ``errors="raise"`` met a
failure, or the run was interrupted; rows never sent get a ``not run: ...`` error saying
which.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmgine.batch.outcome import RowOutcome, one_line
from llmgine.batch.progress import Progress
from llmgine.batch.template import RowTemplate
from llmgine.errors import CommandFailedError
from llmgine.llm.cache.write_behind import WritesBehind
from llmgine.llm.commands import PromptCommand
from llmgine.messages.commands import CommandResult

if TYPE_CHECKING:
    import pandas as pd

    from llmgine.bus.bus import MessageBus
    from llmgine.llm.answered_from_cache import Answered
    from llmgine.llm.engine import LLMEngine
    from llmgine.observability.spans import Span

__all__ = ["BatchRun", "row_label"]

logger = logging.getLogger(__name__)

INTERRUPTED = "interrupted before this row finished; run the same map again to finish the rest"

WRITES_WAIT_ON_INTERRUPT = 1.0
"""Seconds an interrupted (or cancelled, or raising) ``map`` waits for its answers to reach
the cache file before it ends; the store's thread still writes them after."""

CHUNK = 256
"""Rows made ready at once: their templates filled and their answers looked up in the cache."""


def row_label(label: Any) -> Any:
    """A row label as JSON can hold it (the log keeps it in the command's metadata)."""
    if isinstance(label, tuple):
        return [row_label(part) for part in label]
    if hasattr(label, "isoformat"):
        return label.isoformat()
    if hasattr(label, "item"):  # a numpy scalar
        return label.item()
    if label is None or isinstance(label, str | int | float | bool):
        return label
    return str(label)


class BatchRun:
    """Sends the rows of ``frame`` through ``bus`` and keeps each row's outcome.

    Args:
        frame: The rows.
        template: Their prompts.
        bus: Where each row's ``PromptCommand`` is executed.
        fields: ``PromptCommand`` fields every row's command gets (model, options, ...).
        metadata: Merged into every row's command metadata.
        concurrency: Rows in flight at once.
        errors: ``"keep"`` (a failure is the row's ``error``) or ``"raise"``.
        progress: Where finished rows are counted.
        engine: The local engine that runs the rows, whose cache answers finished rows
            before they are sent; ``None``: every row is sent (the bus's workers run them).
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        template: RowTemplate,
        *,
        bus: MessageBus,
        fields: Mapping[str, Any],
        metadata: Mapping[str, Any],
        concurrency: int,
        errors: str,
        progress: Progress,
        engine: LLMEngine | None = None,
    ) -> None:
        self.frame = frame
        self.template = template
        self.bus = bus
        self.fields = dict(fields)
        self.metadata = dict(metadata)
        self.concurrency = concurrency
        self.errors = errors
        self.progress = progress
        self.engine = engine
        self.run_id = uuid.uuid4().hex[:12]
        """Names this run in every row's conversation id and metadata."""
        self.outcomes: list[RowOutcome | None] = [None] * len(frame)
        self.stopped: str | None = None
        """Why sending stopped early (``None``: it did not)."""
        self._next = 0
        """The first row not made ready yet."""
        self._ready: deque[tuple[int, PromptCommand]] = deque()
        """Rows made ready and not answered from the cache: the next to send."""
        self._readying = asyncio.Lock()
        self._senders: list[asyncio.Task[None]] = []
        self._main: asyncio.Task[Any] | None = None
        self._cells: list[list[Any]] | None = None
        self._labels = frame.index.tolist()  # by position, no pandas call per row
        self._writes = WritesBehind(limit=concurrency)
        """The cache writes of this run's rows, waited for before it ends."""
        self._waited_on_interrupt = False
        """Whether an ended-early run waited (a moment) for its writes already."""

    async def run(self) -> None:
        """Send every row (or until stopped); cancelled, it cancels the rows in flight.

        Raises:
            CommandFailedError: With ``errors="raise"``, the first failed row's error.
            HandlerNotFoundError: The bus runs prompts elsewhere and no connected
                process advertises a handler: raised once, before any row is sent.
        """
        self._main = asyncio.current_task()
        try:
            await self._check_handler()
        except BaseException:
            self.progress.close()
            raise
        count = min(self.concurrency, len(self.frame))
        with self._writes.around():  # the rows go on while the cache file writes their answers
            self._senders = [asyncio.ensure_future(self._send()) for _ in range(count)]
        self._writes.adopt(self._senders)
        ended_early = False
        try:
            await asyncio.gather(*self._senders)
            if self.stopped is not None and self.errors != "raise":
                await self._answer_the_rest()  # a budget stop: the cache's answers cost nothing
        except BaseException:
            ended_early = True
            if self.stopped is None:
                self.stopped = INTERRUPTED
            await self.stop()
            raise
        finally:
            try:  # a cancel or an error must not wait long for a locked file
                if ended_early:
                    await self._written_briefly()
                else:
                    await self.written()
            finally:
                self.finish()

    async def _written_briefly(self) -> None:
        """After an interrupt, a cancel or an error: wait a moment for the writes, once."""
        if not self._waited_on_interrupt:  # here or in interrupted(): a second Ctrl-C goes on
            self._waited_on_interrupt = True
            await self.written(timeout=WRITES_WAIT_ON_INTERRUPT)

    async def written(self, timeout: float | None = None) -> None:
        """Wait until the answers of the rows that finished are in the cache file.

        Cancelled meanwhile, or past ``timeout`` seconds, it stops waiting (and says how
        many are still on their way); the store's thread still writes them.
        """
        if not self._writes.pending:
            return
        left = await asyncio.shield(self._writes.wait(timeout))
        if left:
            logger.warning(
                "map: %d answers are still on their way to the cache file (it is locked or "
                "slow); they are written in the background, before this process exits.",
                left,
            )

    async def _check_handler(self) -> None:
        """No local handler: some connected process must advertise one, or nothing is sent.

        Redis unreachable is not decided here: each row then fails saying so.
        """
        if self.bus.command_handler_of(PromptCommand) is not None or self.bus.remote is None:
            return
        await self.bus.remote.command_entry(PromptCommand, self.fields.get("timeout"))

    async def stop(self) -> None:
        """Cancel the rows in flight and wait until they are gone."""
        for sender in self._senders:
            sender.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)

    async def interrupted(self) -> None:
        """After a ``KeyboardInterrupt`` escaped :meth:`run`: cancel what is left, finish."""
        if self.stopped is None:
            self.stopped = INTERRUPTED
        await self.stop()
        await self._written_briefly()  # an interrupt must not hang on a locked file
        if not self.progress.closed:
            self.finish()
        main = self._main
        if main is not None and main.done() and not main.cancelled():
            main.exception()  # the interrupt it ended with was handled: no "never retrieved"

    def finish(self) -> None:
        """Mark the rows never finished as not run (why: :attr:`stopped`), end the bar."""
        missing = [i for i, o in enumerate(self.outcomes) if o is None]
        for position in missing:
            self.outcomes[position] = RowOutcome.not_run(position, self.stopped or INTERRUPTED)
        if missing:
            logger.warning(
                "map stopped with %d of %d rows finished (%s).",
                len(self.outcomes) - len(missing),
                len(self.outcomes),
                self.stopped,
            )
        self.progress.close()

    async def _send(self) -> None:
        while self.stopped is None:
            ready = await self._take()
            if ready is None:
                return
            position, command = ready
            self._done(await self._row(position, command))

    def _done(self, outcome: RowOutcome) -> None:
        self.outcomes[outcome.position] = outcome
        self.progress.add(outcome)
        if outcome.failed:
            self._failed(outcome)

    async def _take(self) -> tuple[int, PromptCommand] | None:
        """The next row to send; ``None`` when there is none (or sending stopped).

        When none is ready, the sender that asks makes the next chunk ready (the others
        wait for it, their rows in flight going on): the cache answers what it can.
        """
        async with self._readying:
            while not self._ready:
                if self.stopped is not None or self._next >= len(self.outcomes):
                    return None
                await self._make_ready()
            return self._ready.popleft()

    async def _make_ready(self) -> None:
        """Fill the next chunk's templates; answer its finished rows from the cache."""
        self._ready.extend(await self._from_cache(self._next_chunk()))

    def _next_chunk(self) -> list[tuple[int, PromptCommand]]:
        """The next chunk's commands; a row whose value does not fit the template: its error."""
        start = self._next
        self._next = min(start + CHUNK, len(self.outcomes))
        commands: list[tuple[int, PromptCommand]] = []
        for position in range(start, self._next):
            try:
                commands.append((position, self._command(position)))
            except Exception as exc:  # this row's value does not fit the template: its error
                self._done(RowOutcome.broken(position, exc, stage="template"))
        return commands

    async def _answer_the_rest(self) -> None:
        """After sending stopped (a budget): answer the rows left from the cache, send none.

        The rows made ready before are looked up again: a row like one that finished
        since (a repeated prompt) is there now.
        """
        ready, self._ready = list(self._ready), deque()
        await self._from_cache(ready, sending=False)
        while self._next < len(self.outcomes):
            await self._from_cache(self._next_chunk(), sending=False)

    async def _from_cache(
        self, commands: Sequence[tuple[int, PromptCommand]], *, sending: bool = True
    ) -> list[tuple[int, PromptCommand]]:
        """Answer the rows the engine's cache can; return the others (to send, if ``sending``).

        A cache that cannot be used as set up (Redis not connected, another program's
        file) answers none here: each row sent then fails saying why.
        """
        if self.engine is None or not commands:
            return list(commands)
        if self.engine.policies.cache_for(commands[0][1]) is None:
            return list(commands)  # no cache for these rows (cache=False, the cache off)
        from llmgine.llm.answered_from_cache import answered_from_cache

        started = time.perf_counter()
        span = self.bus.span(
            "map rows from cache",
            kind="CHAIN",
            **{"llmgine.map.run": self.run_id, "llmgine.map.rows": len(commands)},
        )
        async with span:
            try:
                answers = await answered_from_cache(
                    self.engine, [c for _, c in commands], remember_misses=sending
                )
            except Exception as exc:
                logger.debug("map could not look its rows up in the cache", exc_info=True)
                span.set_status("ERROR", f"{type(exc).__name__}: {exc}")
                answers = [None] * len(commands)
            _describe(span, commands, answers)
        # The chunk's rows were answered together: each gets its share of the time.
        latency_ms = (time.perf_counter() - started) * 1000.0 / len(commands)
        to_send = []
        for (position, command), answered in zip(commands, answers, strict=True):
            if answered is None:
                to_send.append((position, command))
            else:
                trace_id = span.context.trace_id
                self._done(self._outcome(position, answered.result, latency_ms, trace_id))
        return to_send

    def _failed(self, outcome: RowOutcome) -> None:
        """The first failure that stops sending names itself; with ``errors="raise"``, raised."""
        if self.stopped is not None:
            return  # sending stopped already: the first reason stays, and only it is raised
        label = self._labels[outcome.position]
        if outcome.error_type == "BudgetExceededError":
            self.stopped = f"the budget ran out at row {label!r} ({outcome.error})"
        elif self.errors == "raise":
            self.stopped = f"row {label!r} failed and errors='raise'"
        if self.errors == "raise":
            raise CommandFailedError(f"map: row {label!r} failed: {outcome.error}", outcome)

    def _prompt(self, position: int) -> str:
        if isinstance(self.template.template, str):
            if self._cells is None:  # once, by position: a repeated label must not matter
                self._cells = self.frame.astype(object).to_numpy().tolist()
            return self.template.render_cells(self._cells[position])
        return self.template.render(self.frame.iloc[position])

    def _command(self, position: int) -> PromptCommand:
        """Row ``position``'s prompt as a command (its template filled: may raise)."""
        label = row_label(self._labels[position])
        return PromptCommand(
            prompt=self._prompt(position),
            conversation_id=f"map-{self.run_id}-{position}",
            metadata={
                **self.metadata,
                "llmgine.map": {"run": self.run_id, "position": position, "row": label},
            },
            **self.fields,
        )

    async def _row(self, position: int, command: PromptCommand) -> RowOutcome:
        started = time.perf_counter()
        span = self.bus.span(
            "map row", kind="CHAIN", **{"llmgine.map.run": self.run_id, "llmgine.map.row": position}
        )
        try:
            async with span:
                result = await self.bus.execute(command)
        except Exception as exc:  # the bus could not run it (no handler, Redis gone): the row's
            logger.debug("map row %d could not run", position, exc_info=True)
            return RowOutcome.broken(position, exc, stage="not sent")
        latency_ms = (time.perf_counter() - started) * 1000.0
        return self._outcome(position, result, latency_ms, span.context.trace_id)

    def _outcome(
        self, position: int, result: CommandResult, latency_ms: float, trace_id: str | None
    ) -> RowOutcome:
        outcome = RowOutcome.of(position, result, latency_ms=latency_ms, trace_id=trace_id)
        output_type = self.fields.get("output_type")
        if output_type is not None and isinstance(outcome.output, dict):
            try:  # a worker's model crossed Redis as JSON: the model again
                outcome.output = output_type.model_validate(outcome.output)
            except ValueError as exc:
                outcome.output = None
                outcome.error_type = type(exc).__name__
                outcome.error = one_line(f"{outcome.error_type}: {exc}")
        return outcome


def _describe(
    span: Span,
    commands: Sequence[tuple[int, PromptCommand]],
    answers: Sequence[Answered | None],
) -> None:
    """The cache lookup span's attributes: which rows it answered, their model, the saving.

    ``llmgine.map.saved_usd`` is what the answers cost when first asked (``None`` when
    none of them has a known price; ``llmgine.map.unpriced`` counts those without).
    """
    answered = [(p, a) for (p, _), a in zip(commands, answers, strict=True) if a is not None]
    saved = [a.answer.cost_saved_usd for _, a in answered]
    models = Counter(a.result.metadata.get("model") for _, a in answered)
    unpriced = saved.count(None)
    span.set_attribute("llmgine.map.answered", len(answered))
    span.set_attribute("llmgine.map.positions", [p for p, _ in answered])  # the log joins by these
    span.set_attribute("llmgine.map.model", models.most_common(1)[0][0] if models else None)
    known = [usd for usd in saved if usd is not None]
    span.set_attribute("llmgine.map.saved_usd", sum(known) if known else None)
    span.set_attribute("llmgine.map.unpriced", unpriced)
