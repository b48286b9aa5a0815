"""``run_experiment``: every row under every variant, ``repeats`` times, through ``map``, scored."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from llmgine.errors import ConfigurationError
from llmgine.evals.experiment import Experiment, check_scorers
from llmgine.evals.scorers import LLMJudge, Scorer
from llmgine.evals.scoring import ScoringContext, score_results

if TYPE_CHECKING:
    import pandas as pd

    from llmgine.batch import Template
    from llmgine.bus import MessageBus
    from llmgine.llm.engine import LLMEngine

__all__ = ["Variant", "arun_experiment", "run_experiment"]

logger = logging.getLogger(__name__)

_VARIANT_KEYS = frozenset({"model", "system_prompt", "options", "prompt"})


@dataclass(frozen=True)
class Variant:
    """One way of asking: a model, a system prompt, request options, a prompt."""

    name: str
    model: str | None = None
    system_prompt: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    prompt: Template | None = None


def variants_of(variants: Mapping[str, Mapping[str, Any]] | None) -> list[Variant]:
    """The variants, checked: ``{"name": {"model": ..., "system_prompt": ..., ...}}``."""
    if variants is None:
        return [Variant("default")]
    if not isinstance(variants, Mapping) or not variants:
        raise ConfigurationError(
            'variants must be a dict of names to settings, e.g. {"small": {"model": "offline"}}.'
        )
    found: list[Variant] = []
    for name, settings in variants.items():
        if name is None or not str(name).strip():
            raise ConfigurationError(
                f"A variant is named {name!r}: give each variant a name of its own, a "
                'non-empty string such as "small", as tables and plots show it.'
            )
        unknown = set(settings) - _VARIANT_KEYS
        if unknown:
            raise ConfigurationError(
                f"Variant {name!r} has unknown settings {sorted(unknown)}: a variant takes "
                f"{sorted(_VARIANT_KEYS)} (request options such as temperature go in "
                '"options").'
            )
        if str(name) in (v.name for v in found):
            same = [n for n in variants if str(n) == str(name)]
            raise ConfigurationError(
                f"Variants {same!r} have one name, {str(name)!r}, once written as text: "
                "give each variant a name of its own (a string)."
            )
        found.append(
            Variant(
                name=str(name),
                model=settings.get("model"),
                system_prompt=settings.get("system_prompt"),
                options=dict(settings.get("options") or {}),
                prompt=settings.get("prompt"),
            )
        )
    return found


def _tidy(
    frame: pd.DataFrame, variant: str, repeat: int, output_type: type[BaseModel] | None
) -> pd.DataFrame:
    """``map``'s frame as the experiment's rows: ``row``, ``variant``, ``repeat``, outputs, ...

    ``map`` renames a column the data has already (``llm_error``, ``output_span_id``) and
    says so in ``attrs["llmgine.map.columns"]``: the experiment's columns are the
    documented names again, whatever the data's columns or the output's fields are called.
    """
    import pandas as pd

    from llmgine.batch.frame import RESULT_COLUMNS

    given: dict[str, str] = frame.attrs["llmgine.map.columns"]
    fields: dict[str, str] = frame.attrs["llmgine.map.fields"]
    names = {column: name for name, column in given.items() if name in RESULT_COLUMNS}
    if output_type is None:
        names[given["output"]] = "output"
    else:  # every field, one named like a result column too (map's ``output_model``)
        names.update({column: f"output.{field}" for field, column in fields.items()})
    tidy = pd.DataFrame(
        {
            "row": pd.Series(list(frame.index), dtype=object),
            "variant": variant,
            "repeat": repeat,
        }
    )
    rest = frame.rename(columns=names).reset_index(drop=True)
    return pd.concat([tidy, rest], axis=1)


async def arun_experiment(
    data: pd.DataFrame,
    prompt: Template | None = None,
    *,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    scorers: Sequence[Scorer | LLMJudge] = (),
    expected: str | None = None,
    repeats: int = 1,
    concurrency: int = 8,
    engine: LLMEngine | None = None,
    bus: MessageBus | None = None,
    name: str | None = None,
    output_type: type[BaseModel] | None = None,
    progress: bool = True,
) -> Experiment:
    """Run every row of ``data`` under every variant, ``repeats`` times, and score the outputs.

    Each variant and repeat is one ``map`` (so the cache, rate limits, retries, cost and
    progress bar apply, and rows run on Redis workers when ``bus`` is connected to
    Redis). Repeat 0 shares its answers with a plain ``map`` of the same settings;
    repeat ``r >= 1`` salts the cache key with ``"repeat r"``, so repeats are distinct
    calls and their variance is real. Every row's command carries ``experiment``,
    ``variant`` and ``repeat`` in its metadata, and every score is an
    ``EvaluationEvent`` on the bus, so the log alone rebuilds the experiment.

    Args:
        data: The rows, any DataFrame.
        prompt: The prompt template (``"Classify: {review}"``) or a function of the
            row; a variant's own ``"prompt"`` replaces it.
        variants: ``{"name": {"model": ..., "system_prompt": ..., "options": {...},
            "prompt": ...}}``; ``None``: one variant, ``"default"``, the engine's model.
        scorers: Functions ``(output, expected, row) -> float | bool`` and built-ins
            (:mod:`llmgine.evals.scorers`), an LLM judge among them.
        expected: The column of ``data`` holding the expected output, if any.
        repeats: How many times each row runs under each variant.
        concurrency: Rows in flight at once within one ``map``.
        engine: The engine to run the prompts (its cache, limits, budget apply).
        bus: Without ``engine``: the bus whose ``PromptCommand`` handler runs them (a
            local engine, or workers over Redis). With neither, a bus and engine of the
            experiment's own.
        name: The experiment's name, in the log and in ``from_log`` (default
            ``"experiment"``).
        output_type: A pydantic model every answer must match (fields become
            ``output.<field>`` columns; scorers get the model instance).
        progress: Show each ``map``'s progress bar.

    Raises:
        ConfigurationError: ``data`` has no rows; a variant (two names that are one as
            text, ``{1: ..., "1": ...}``), a scorer, ``expected`` or ``repeats`` is wrong.
        TemplateError: A prompt does not fit ``data``'s columns.
    """
    import pandas as pd

    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"run_experiment takes a pandas DataFrame; got {type(data).__name__}.")
    if len(data) == 0:
        raise ConfigurationError(
            f"The data has no rows (columns {list(data.columns)}): an experiment needs at "
            "least one row to run; check the filter or slice that made the frame."
        )
    found = variants_of(variants)
    missing = [v.name for v in found if v.prompt is None and prompt is None]
    if missing:
        raise ConfigurationError(
            f'No prompt for variant(s) {missing}: pass prompt= or give each variant a "prompt".'
        )
    empty = [v.name for v in found if isinstance(v.prompt, str) and not v.prompt.strip()]
    if isinstance(prompt, str) and not prompt.strip() and any(v.prompt is None for v in found):
        empty.insert(0, "prompt=")
    if empty:
        raise ConfigurationError(
            f"An empty prompt template for {empty}: the model would be asked nothing; give a "
            'template such as "Classify: {review}" (or a function of the row).'
        )
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigurationError(f"repeats must be a whole number of 1 or more; got {repeats!r}.")
    if expected is not None and expected not in data.columns:
        raise ConfigurationError(
            f"expected={expected!r} is not a column of the data; its columns are "
            f"{list(data.columns)}."
        )
    check_scorers(scorers)
    name = name or "experiment"
    if engine is None and bus is None:
        from llmgine.bus.bus import MessageBus
        from llmgine.llm.engine import LLMEngine

        async with MessageBus() as own:
            return await arun_experiment(
                data,
                prompt,
                variants=variants,
                scorers=scorers,
                expected=expected,
                repeats=repeats,
                concurrency=concurrency,
                engine=LLMEngine(own),
                name=name,
                output_type=output_type,
                progress=progress,
            )
    from llmgine.batch import amap

    run = uuid.uuid4().hex  # this run's id: from_log tells a re-run of the same name apart

    def run_map(frame: pd.DataFrame, template: Any, **options: Any) -> Any:
        return amap(frame, template, engine=engine, bus=bus, **options)

    parts = []
    for variant in found:
        template = variant.prompt if variant.prompt is not None else prompt
        assert template is not None
        for repeat in range(repeats):
            frame = await run_map(
                data,
                template,
                model=variant.model,
                output_type=output_type,
                system_prompt=variant.system_prompt,
                concurrency=concurrency,
                errors="keep",
                progress=progress,
                cache_salt=None if repeat == 0 else f"repeat {repeat}",
                metadata={
                    "experiment": name,
                    "variant": variant.name,
                    "repeat": repeat,
                    "expected": expected,  # the column's name, for from_log
                    "experiment_run": run,
                },
                **variant.options,
            )
            parts.append(_tidy(frame, variant.name, repeat, output_type))
    results = pd.concat(parts, ignore_index=True)
    positions = list(range(len(data))) * (len(found) * repeats)
    target = engine.bus if engine is not None else bus
    context = ScoringContext(
        experiment=name,
        data=data,
        positions=positions,
        expected=expected,
        output_type=output_type,
        bus=target,
        run_map=run_map,
        run=run,
    )
    scored = await score_results(results, scorers, context)
    return Experiment(
        name=name,
        results=scored.results,
        scorers=list(scorers),
        data=data,
        expected=expected,
        output_type=output_type,
        bus=target,
        run_map=run_map,
        positions=positions,
        pass_fail=scored.pass_fail,
        run=run,
    )


def run_experiment(
    data: pd.DataFrame,
    prompt: Template | None = None,
    *,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    scorers: Sequence[Scorer | LLMJudge] = (),
    expected: str | None = None,
    repeats: int = 1,
    concurrency: int = 8,
    engine: LLMEngine | None = None,
    bus: MessageBus | None = None,
    name: str | None = None,
    output_type: type[BaseModel] | None = None,
    progress: bool = True,
) -> Experiment:
    """:func:`arun_experiment` from synchronous code (a notebook cell, a script).

    With neither ``engine`` nor ``bus``, the notebook's default engine runs the prompts
    (logged to its bus's log, like ``df.llmgine.map``). The arguments are
    :func:`arun_experiment`'s.

    An interrupt (the kernel's stop button, or Ctrl-C) stops sending: the rows in flight
    are cancelled, no further row or variant is sent, and ``KeyboardInterrupt`` is
    raised once that is done (no partial experiment: its summary would compare variants
    that did not all run). The answers that finished are in the cache, so running the
    same experiment again sends only the rest.

    Raises:
        KeyboardInterrupt: The run was interrupted (after its rows were cancelled).
    """
    from llmgine.notebook.sync import run_sync

    if engine is None and bus is None:
        from llmgine.notebook.runtime import get_engine

        engine = get_engine()
    target = engine.bus if engine is not None else bus
    assert target is not None
    if not target.is_running:
        run_sync(target.start())
    running: list[asyncio.Task[Any]] = []

    async def experiment() -> Experiment:
        task = asyncio.current_task()
        if task is not None:
            running.append(task)
        return await arun_experiment(
            data,
            prompt,
            variants=variants,
            scorers=scorers,
            expected=expected,
            repeats=repeats,
            concurrency=concurrency,
            engine=engine,
            bus=bus,
            name=name,
            output_type=output_type,
            progress=progress,
        )

    try:
        return run_sync(experiment())
    except KeyboardInterrupt:
        if running:
            _cancel(running[0], rounds=concurrency + 3)
        raise


def _cancel(task: asyncio.Task[Any], rounds: int) -> None:
    """After an interrupt: cancel the experiment's task and wait until it is gone.

    Cancelled, each ``map`` cancels its rows in flight and waits for them (the waiting is
    :func:`~llmgine.notebook.sync.settle_after_interrupt`'s, as for a sync ``map``).
    """
    from llmgine.notebook.sync import settle_after_interrupt

    task.cancel()
    settle_after_interrupt(lambda: asyncio.wait([task]), rounds)
    if not task.done():
        logger.warning("run_experiment: interrupted, and its rows were not all cancelled yet.")
    elif not task.cancelled():
        task.exception()  # the interrupt it ended with is the caller's: no "never retrieved"
