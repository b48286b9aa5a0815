"""``map``: one prompt over every row of a DataFrame, as a DataFrame of answers.

``await amap(df, "Classify: {review}", engine=engine)`` is the async form (and
``engine.map``); :func:`map_rows` the sync one (``df.llmgine.map`` in a notebook cell
or a script). Each row is one ``PromptCommand`` in a conversation of its own, executed
on the bus: by the local engine, or by the workers of a bus connected to Redis.
"""

from __future__ import annotations

import logging
import operator
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import BaseModel, ValidationError

from llmgine.batch.frame import output_columns, result_frame
from llmgine.batch.progress import Progress
from llmgine.batch.run import BatchRun
from llmgine.batch.template import RowTemplate, Template
from llmgine.errors import ConfigurationError, HandlerNotFoundError
from llmgine.llm.commands import PromptCommand

if TYPE_CHECKING:
    import pandas as pd

    from llmgine.bus.bus import MessageBus
    from llmgine.llm.engine import LLMEngine

__all__ = ["amap", "map_rows"]

logger = logging.getLogger(__name__)

Errors = Literal["keep", "raise"]

_MAPS_OWN = frozenset({"prompt", "conversation_id", "id", "timestamp", "session_id", "stream"})
"""``PromptCommand`` fields ``map`` sets itself for every row (a row is never streamed)."""
_COMMAND_FIELDS = frozenset(PromptCommand.model_fields) - _MAPS_OWN - {"metadata"}
"""``PromptCommand`` fields ``map`` passes through by name (``temperature``, ``timeout``, ...)."""


def _command_fields(
    model: str | None,
    output_type: type[BaseModel] | None,
    system_prompt: str | None,
    cache_salt: str | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """The fields of every row's command; checked once here, before any row is sent."""
    # A re-run answers finished rows from the cache; a row's conversation keeps nothing.
    fields: dict[str, Any] = {"cache": True, "remember": False}
    options = dict(options)
    own = sorted(_MAPS_OWN & set(options))
    if own:
        raise ConfigurationError(
            f"map sets {', '.join(own)} itself (one prompt and conversation per row, never "
            "streamed); leave it out."
        )
    request_options = dict(options.pop("options", None) or {})
    for name, value in options.items():
        if name in _COMMAND_FIELDS:
            fields[name] = value
        else:
            request_options[name] = value  # seed, top_p, stop, ...: sent as they are
    fields.update(model=model, output_type=output_type, system_prompt=system_prompt)
    fields.update(cache_salt=cache_salt, options=request_options or None)
    try:
        PromptCommand(prompt="", **fields)
    except ValidationError as exc:
        raise ConfigurationError(
            f"map cannot make a PromptCommand of these settings: {exc}"
        ) from exc
    return {k: v for k, v in fields.items() if v is not None}


def _check(frame: Any, concurrency: Any, errors: str) -> int:
    """Check the settings; return ``concurrency`` as an int (a numpy integer is one too)."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"map takes a pandas DataFrame; got {type(frame).__name__}.")
    count = None
    if not isinstance(concurrency, bool):  # numpy's bool is no index either
        with suppress(TypeError):
            count = operator.index(concurrency)
    if count is None or count < 1:
        raise ConfigurationError(
            f"concurrency must be a whole number of 1 or more; got {concurrency!r}."
        )
    if errors not in ("keep", "raise"):
        raise ConfigurationError(f"errors must be 'keep' or 'raise'; got {errors!r}.")
    return count


_quieted: weakref.WeakKeyDictionary[Any, tuple[int, bool, bool]] = weakref.WeakKeyDictionary()


@contextmanager
def quiet_console(bus: MessageBus) -> Iterator[None]:
    """No console line per row while a batch runs (the log keeps them; the bar shows it).

    Runs that overlap on one bus share the quiet: the console's settings come back
    when the last of them ends.
    """
    console = bus.console
    depth, metrics, traces = _quieted.get(console, (0, console.metrics, console.traces))
    _quieted[console] = (depth + 1, metrics, traces)
    console.metrics = console.traces = False
    try:
        yield
    finally:
        _unquiet(console)


def _unquiet(console: Any) -> None:
    """One quiet ends; the last restores the console (none left: a late close, ignored)."""
    entry = _quieted.get(console)
    if entry is None:
        return
    depth, metrics, traces = entry
    if depth == 1:
        del _quieted[console]
        console.metrics, console.traces = metrics, traces
    else:
        _quieted[console] = (depth - 1, metrics, traces)


class _Settings(NamedTuple):
    model: str | None
    output_type: type[BaseModel] | None
    system_prompt: str | None
    concurrency: int
    errors: str
    progress: bool
    cache_salt: str | None
    metadata: Mapping[str, Any] | None


class Batch:
    """A prepared ``map``: checked settings and a run to start, interrupt and read."""

    def __init__(
        self,
        frame: pd.DataFrame,
        template: Template,
        bus: MessageBus,
        settings: _Settings,
        options: dict[str, Any],
    ) -> None:
        concurrency = _check(frame, settings.concurrency, settings.errors)
        fields = _command_fields(
            settings.model,
            settings.output_type,
            settings.system_prompt,
            settings.cache_salt,
            options,
        )
        self.frame = frame
        self.output_type = settings.output_type
        self.columns = output_columns(settings.output_type, frame.columns)
        self.run = BatchRun(
            frame,
            RowTemplate(template, frame.columns),
            bus=bus,
            fields=fields,
            metadata=dict(settings.metadata or {}),
            concurrency=concurrency,
            errors=settings.errors,
            progress=Progress(len(frame), enabled=settings.progress and len(frame) > 0),
            engine=_local_engine(bus),
        )

    def result(self) -> pd.DataFrame:
        """The rows' outcomes as a frame on the input's index."""
        return result_frame(
            self.frame.index,
            self.run.outcomes,
            self.columns,
            structured=self.output_type is not None,
            levels=self.frame.columns.nlevels,
        )


async def amap(
    frame: pd.DataFrame,
    template: Template,
    *,
    engine: LLMEngine | None = None,
    bus: MessageBus | None = None,
    model: str | None = None,
    output_type: type[BaseModel] | None = None,
    system_prompt: str | None = None,
    concurrency: int = 8,
    errors: Errors = "keep",
    progress: bool = True,
    cache_salt: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Send ``template`` filled from each row of ``frame`` as a prompt; one row of answers each.

    Args:
        frame: Any DataFrame.
        template: ``"Classify: {review}"`` (``str.format`` over the row's columns; a
            missing value is an empty string) or a function of the row returning the
            prompt. A column the template names and the frame lacks fails before
            anything is sent; a row whose value does not fit (``{price:.2f}`` on text)
            gets that as its ``error``.
        engine: The engine to run the rows (its cache, limits, retries, fallback and
            budget apply to every row).
        bus: Without ``engine``: the bus whose ``PromptCommand`` handler runs the rows,
            a local engine or the workers of a bus connected to Redis. With neither,
            a bus and a default engine (``model``) of this call's own.
        model: A model string for every row (else the engine's).
        output_type: A pydantic model each answer must match; its fields become columns.
        system_prompt: The system prompt of every row's conversation.
        concurrency: Rows in flight at once (the engine's rate limits still apply).
        errors: ``"keep"``: a failed row's ``error`` says why and the batch goes on;
            ``"raise"``: the first failure stops sending and is raised.
        progress: Show a progress bar (``tqdm.auto``): rows, errors, tokens, cost.
        cache_salt: Keeps this run's answers apart in the cache (an experiment's repeats).
        metadata: Added to every row's command metadata (the log keeps it).
        **options: Further ``PromptCommand`` fields (``temperature``, ``max_tokens``,
            ``timeout``, ``cache=False``, ...) or request options (``seed``, ``top_p``).

    Returns:
        A frame on ``frame``'s index, same order and length: ``output`` (or one column
        per field of ``output_type``, ``output_<name>`` when ``frame`` has that column
        or the field is named like one of the columns below: ``output_model``),
        ``error``, ``input_tokens``, ``output_tokens``, ``cost_usd``, ``latency_ms``,
        ``cached``, ``model``, ``trace_id`` (``llm_<name>`` when ``frame`` has that
        column). ``frame.join(result)`` adds them (on MultiIndex columns each is
        ``(name, "", ...)``); ``result.attrs["llmgine.map.fields"]`` names each field's
        column.

    Rows that finished are in the cache (the engine's, else the default file), so running
    the same ``map`` again sends only the rows that did not. A budget that runs out stops
    sending: the rows not sent say so in ``error``. Cancelled, ``amap`` cancels the rows
    in flight and raises ``CancelledError`` (what finished is in the cache and the log);
    the sync :func:`map_rows` returns what finished instead.

    Raises:
        TemplateError: The template does not fit the frame's columns.
        ConfigurationError: A setting is out of range or not a ``PromptCommand`` field's,
            or ``model`` is one the engine cannot run (an unknown model string).
        HandlerNotFoundError: Nothing on ``bus`` handles ``PromptCommand`` (nor, on a
            bus connected to Redis, any connected worker): raised before any row is sent.
        CommandFailedError: With ``errors="raise"``, the first row that failed.
    """
    settings = _Settings(
        model, output_type, system_prompt, concurrency, errors, progress, cache_salt, metadata
    )
    if engine is not None or bus is not None:
        target = _target(engine, bus)
        _check_model(target, model)
        batch = Batch(frame, template, target, settings, options)
        with quiet_console(target):
            await batch.run.run()
        return batch.result()
    from llmgine.bus.bus import MessageBus
    from llmgine.llm.engine import LLMEngine

    async with MessageBus(enable_console_metrics=False, enable_console_traces=False) as own:
        LLMEngine(own, model=model)
        batch = Batch(frame, template, own, settings, options)
        await batch.run.run()
        return batch.result()


def map_rows(
    frame: pd.DataFrame,
    template: Template,
    *,
    engine: LLMEngine | None = None,
    bus: MessageBus | None = None,
    model: str | None = None,
    output_type: type[BaseModel] | None = None,
    system_prompt: str | None = None,
    concurrency: int = 8,
    errors: Errors = "keep",
    progress: bool = True,
    cache_salt: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """:func:`amap` from synchronous code: a notebook cell, a script, a magic.

    Runs on the notebook's loop (or IPython's own without a kernel). In a plain script,
    a bus this call had to start is stopped when it returns (it starts again when
    used), so the script needs no ``bus.stop()`` and ends cleanly. With neither
    ``engine`` nor ``bus``, in IPython the notebook's default engine runs the rows (the
    one ``%llmgine chat`` uses, logged to its bus's log); in a plain script a bus and
    engine of this call's own, as :func:`amap`. An interrupt (the kernel's, or
    Ctrl-C) stops sending, cancels the rows in flight and returns the frame: finished
    rows filled, the others with ``error`` "not run: interrupted ...". Running it again
    sends only those. The arguments are :func:`amap`'s.
    """
    from llmgine.notebook.sync import run_sync

    if engine is None and bus is None:
        from IPython import get_ipython

        if get_ipython() is None:  # a plain script: a bus of its own, stopped at the end
            return run_sync(
                amap(
                    frame,
                    template,
                    model=model,
                    output_type=output_type,
                    system_prompt=system_prompt,
                    concurrency=concurrency,
                    errors=errors,
                    progress=progress,
                    cache_salt=cache_salt,
                    metadata=metadata,
                    **options,
                )
            )
        from llmgine.notebook.runtime import get_engine

        engine = get_engine()
    target = _target(engine, bus)
    settings = _Settings(
        model, output_type, system_prompt, concurrency, errors, progress, cache_salt, metadata
    )
    _check_model(target, model)
    batch = Batch(frame, template, target, settings, options)
    with _started(target), quiet_console(target):
        try:
            run_sync(batch.run.run())
        except KeyboardInterrupt:
            _clean_up(batch.run)
    return batch.result()


@contextmanager
def _started(bus: MessageBus) -> Iterator[None]:
    """``bus`` running for a sync ``map``; stopped after it if a plain script's and started here.

    In a script nothing else runs the loop the bus would be left on, so the bus could
    not be stopped (``asyncio.run(bus.stop())`` is another loop) and its task would be
    destroyed pending at exit. In IPython the bus stays on the notebook's loop.
    """
    from IPython import get_ipython

    from llmgine.notebook.sync import run_sync, settle_after_interrupt

    if bus.is_running:
        yield
        return
    run_sync(bus.start())
    try:
        yield
    finally:
        if get_ipython() is None and bus.is_running:
            settle_after_interrupt(bus.stop, rounds=3)


def _local_engine(bus: MessageBus) -> LLMEngine | None:
    """The engine on ``bus`` that answers its prompts here, if one does."""
    from llmgine.llm.engine import LLMEngine

    engine = getattr(bus.command_handler_of(PromptCommand), "__self__", None)
    return engine if isinstance(engine, LLMEngine) else None


def _check_model(bus: MessageBus, model: str | None) -> None:
    """A ``model`` the local engine cannot run fails once here, before any row is sent.

    The engine makes (and keeps) the model's provider now instead of at the first row;
    a bus whose prompts run in other processes is left to them.
    """
    if model is None:
        return
    engine = _local_engine(bus)
    if engine is not None:
        engine._provider(model)


def _clean_up(run: BatchRun) -> None:
    """After an interrupt: cancel the rows in flight and wait for them, then finish."""
    from llmgine.notebook.sync import settle_after_interrupt

    if not settle_after_interrupt(run.interrupted, rounds=run.concurrency + 3):
        run.finish()


def _target(engine: LLMEngine | None, bus: MessageBus | None) -> MessageBus:
    """The bus the rows go to, checked to have something that answers them."""
    from llmgine.bus.bus import MessageBus
    from llmgine.llm.engine import LLMEngine

    if engine is not None and not isinstance(engine, LLMEngine):
        raise TypeError(f"engine= takes an LLMEngine; got {type(engine).__name__} (a bus: bus=).")
    if bus is not None and not isinstance(bus, MessageBus):
        raise TypeError(
            f"bus= takes a MessageBus; got {type(bus).__name__} (an engine is engine=)."
        )
    target = engine.bus if engine is not None else bus
    assert target is not None
    if target.command_handler_of(PromptCommand) is None and target.remote is None:
        raise HandlerNotFoundError(
            "Nothing on this bus answers PromptCommand: pass engine=, make an LLMEngine on the "
            "bus, or connect the bus to Redis (await bus.connect(url)) where workers run one."
        )
    return target
