"""An experiment rebuilt from a log alone: outputs from its prompts, scores from its events.

Each row's ``PromptCommand`` carries ``experiment``, ``variant`` and ``repeat`` in its
metadata (and ``map``'s row label and position); its ``CommandResultEvent`` (or
``CommandErrorEvent``) carries the output and the usage; every score is an
``EvaluationEvent``. Rows are told apart by their position in the data (so rows that
share a label stay apart; by label in a log without positions). When the log holds
several runs of one name (a cell run twice: each run's prompts and scores carry its
id, ``experiment_run``), only the latest run is rebuilt; within it, when a row ran
more than once (a rescore), the latest line wins. A scorer is pass/fail when
every score it gave is labelled ``pass`` or ``fail``. A judge's cost is not rebuilt (its
prompts are in the log as its own rows).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from llmgine.batch.outcome import one_line
from llmgine.errors import ConfigurationError
from llmgine.evals.experiment import Experiment
from llmgine.observability.codec import read_log

__all__ = ["experiment_from_log"]

_PROMPT = ("llmgine.llm.commands", "PromptCommand")
_RESULTS = {
    ("llmgine.messages.events", "CommandResultEvent"),
    ("llmgine.messages.events", "CommandErrorEvent"),
}
_SCORE = ("llmgine.evals.events", "EvaluationEvent")


def _key(label: Any) -> str:
    return repr(tuple(label) if isinstance(label, list) else label)


def _where(position: Any, label: Any) -> Any:
    """A data row's key: its position when the log has it, else its label."""
    return int(position) if isinstance(position, int) else _key(label)


def experiment_from_log(path: str | Path, name: str) -> Experiment:
    """Rebuild the experiment ``name`` from the log at ``path`` (see the module's docstring)."""
    import pandas as pd

    commands: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {}
    scores: dict[tuple[str, int, Any, str], dict[str, Any]] = {}
    names: list[str] = []
    expected: str | None = None
    for envelope in read_log(path):
        key = (envelope.module, envelope.type)
        if key == _PROMPT and envelope.metadata.get("experiment") == name:
            meta = envelope.metadata
            if "variant" not in meta or "judge" in meta:
                continue
            row = (meta.get("llmgine.map") or {}).get("row")
            position = (meta.get("llmgine.map") or {}).get("position")
            if isinstance(meta.get("expected"), str):
                expected = meta["expected"]
            commands[envelope.id] = {
                "row": row,
                "position": position if isinstance(position, int) else None,
                "variant": str(meta["variant"]),
                "repeat": int(meta.get("repeat", 0)),
                "trace_id": envelope.trace_id,
                "run": meta.get("experiment_run"),
            }
        elif key in _RESULTS:
            result = envelope.data.get("command_result") or {}
            command_id = str(result.get("command_id"))
            if command_id in commands:
                results[command_id] = result
        elif key == _SCORE and envelope.data.get("experiment") == name:
            data = envelope.data
            scorer = str(data.get("scorer"))
            if scorer not in names:
                names.append(scorer)
            at = _where(data.get("position"), data.get("row"))
            scores[(str(data["variant"]), int(data["repeat"]), at, scorer)] = data
    if not commands:
        raise ConfigurationError(
            f"The log {path} holds no experiment named {name!r}: check the name "
            "(run_experiment(name=...)) and that the log is the bus's that ran it."
        )
    run = _latest_run(commands)
    if run is not None:  # several runs of one name: the latest alone
        commands = {k: c for k, c in commands.items() if c["run"] == run}
        scores = {k: s for k, s in scores.items() if s.get("run") in (run, None)}
        names = [n for n in names if any(k[3] == n for k in scores)]
    rows: dict[tuple[str, int, Any], dict[str, Any]] = {}
    positions: dict[tuple[str, int, Any], int | None] = {}
    places: dict[tuple[str, int, Any], tuple[str, int, Any]] = {}
    """A score without a position (an older log) finds its row by label."""
    for command_id, command in commands.items():  # in the order they ran; the latest wins
        result = results.get(command_id, {})
        meta = result.get("metadata") or {}
        output = result.get("result") if result.get("success") else None
        error = None
        if result and not result.get("success"):
            error = one_line(f"{result.get('error_type') or 'Error'}: {result.get('error')}")
        elif not result:
            error = "not run: no result in the log"
        record: dict[str, Any] = {
            "row": tuple(command["row"]) if isinstance(command["row"], list) else command["row"],
            "variant": command["variant"],
            "repeat": command["repeat"],
        }
        if isinstance(output, dict):
            record.update({f"output.{k}": v for k, v in output.items()})
        else:
            record["output"] = output
        latency = result.get("duration_ms")
        record.update(
            error=error,
            input_tokens=meta.get("input_tokens"),
            output_tokens=meta.get("output_tokens"),
            cost_usd=meta.get("cost_usd"),
            latency_ms=math.nan if latency is None else float(latency),
            cached=meta.get("cached"),
            model=meta.get("model"),
            trace_id=command["trace_id"],
        )
        at = (command["variant"], command["repeat"], _where(command["position"], command["row"]))
        rows.pop(at, None)
        rows[at] = record
        positions[at] = command["position"]
        places[(command["variant"], command["repeat"], _key(command["row"]))] = at
    notes: dict[tuple[str, int, Any], list[str]] = {}
    labels: dict[str, bool] = {}
    for (variant, repeat, where, scorer), data in scores.items():
        at = (variant, repeat, where)
        at = at if at in rows else places.get(at, at)
        record = rows.get(at, {})
        if not record:
            continue
        if data.get("score") is not None:
            passed = data.get("label") in ("pass", "fail")
            labels[scorer] = labels.get(scorer, True) and passed
        score = data.get("score")
        record[f"score.{scorer}"] = math.nan if score is None else float(score)
        if data.get("explanation") is not None:
            record[f"reason.{scorer}"] = data["explanation"]
        if data.get("error"):
            notes.setdefault(at, []).append(f"{scorer}: {data['error']}")
    keys = list(rows)
    frame = pd.DataFrame([rows[k] for k in keys])
    frame["_at"] = keys
    frame["_position"] = [positions[k] if positions[k] is not None else -1 for k in keys]
    frame = frame.sort_values(["variant", "repeat", "_position"], kind="stable", key=_order(frame))
    for scorer in names:
        column = f"score.{scorer}"
        frame[column] = frame[column].astype("float64") if column in frame else math.nan
    frame["scorer_errors"] = ["; ".join(notes[k]) if k in notes else None for k in frame["_at"]]
    found = [positions[k] for k in frame["_at"]]
    frame = frame.drop(columns=["_at", "_position"])
    for column in frame.columns:  # as run_experiment gives them: labels and outputs as they are
        if column == "row" or column == "output" or str(column).startswith("output."):
            frame[column] = pd.Series(list(frame[column]), index=frame.index, dtype=object)
    for column in ("input_tokens", "output_tokens"):
        frame[column] = frame[column].astype("Int64")
    frame["cost_usd"] = frame["cost_usd"].astype("float64")
    frame["cached"] = frame["cached"].astype("boolean")
    return Experiment(
        name=name,
        results=frame.reset_index(drop=True),
        expected=expected,
        positions=[p for p in found if p is not None] if None not in found else [],
        pass_fail=[s for s in names if labels.get(s)],
        run=run,
    )


def _latest_run(commands: dict[str, dict[str, Any]]) -> str | None:
    """The id of the run whose prompt came last in the log (``None``: a log without ids)."""
    runs = [c["run"] for c in commands.values() if isinstance(c["run"], str)]
    return runs[-1] if runs else None


def _order(frame: Any) -> Any:
    """Sort variants in the order they first ran, repeats by number."""
    first = {v: i for i, v in enumerate(dict.fromkeys(frame["variant"]))}

    def key(column: Any) -> Any:
        return column.map(first) if column.name == "variant" else column

    return key
