"""``%llmgine cost`` and ``cache``: what this session's calls cost, and the cache that saves it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmgine.errors import ConfigurationError, MagicError
from llmgine.notebook.arguments import split
from llmgine.notebook.notes import Note
from llmgine.notebook.runtime import get_runtime
from llmgine.notebook.sync import run_sync
from llmgine.observability.usd import format_usd

if TYPE_CHECKING:
    import pandas as pd

    from llmgine.bus.bus import MessageBus
    from llmgine.llm.cache import LLMCache
    from llmgine.llm.engine import LLMEngine

__all__ = ["COLUMNS", "CostNote", "by", "cache", "cost", "spent"]

COLUMNS = [
    "model",
    "conversation_id",
    "calls",
    "cached_calls",
    "unpriced_calls",
    "unpriced_cached_calls",
    "tokens",
    "cost_usd",
    "saved_usd",
]
"""The columns of ``%llmgine cost``'s frames, read from the log or from ``engine.spend``."""

_SPEND_SQL = """
SELECT model, conversation_id, count(*) AS calls,
       count(*) FILTER (WHERE cached) AS cached_calls,
       count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_calls,
       count(*) FILTER (WHERE cached AND cost_saved_usd IS NULL) AS unpriced_cached_calls,
       coalesce(sum(total_tokens) FILTER (WHERE NOT cached), 0) AS tokens,
       sum(cost_usd) AS cost_usd,
       coalesce(sum(cost_saved_usd) FILTER (WHERE cached), 0.0) AS saved_usd
FROM llm_calls GROUP BY model, conversation_id ORDER BY model, conversation_id
"""

_MAP_SPAN = "map rows from cache"
"""The span of a chunk of ``map`` rows answered from the cache: they have no call of their own."""


class CostNote(Note):
    """``%llmgine cost``: totals and tables as Markdown, and the numbers as DataFrames.

    Attributes:
        calls: One row per model and conversation (:data:`COLUMNS`).
        by_model: The calls summed by model.
        by_conversation: The calls summed by conversation.
    """

    def __init__(self, text: str, calls: pd.DataFrame) -> None:
        super().__init__(text)
        self.calls = calls
        self.by_model = by(calls, "model")
        self.by_conversation = by(calls, "conversation_id")

    @property
    def usd(self) -> float | None:
        """US dollars spent by the calls of known price; ``None`` if no call sent has one."""
        sent = int(self.calls["calls"].sum() - self.calls["cached_calls"].sum())
        unpriced = int(self.calls["unpriced_calls"].sum())
        if unpriced and unpriced == sent:
            return None
        return float(self.calls["cost_usd"].sum())


def by(calls: pd.DataFrame, key: str) -> pd.DataFrame:
    """``calls`` (:data:`COLUMNS`) summed by ``key``: ``"model"`` or ``"conversation_id"``."""
    numbers = ["calls", "cached_calls", "unpriced_calls", "unpriced_cached_calls", "tokens"]
    grouped = calls.groupby(key, sort=True)
    frame = grouped[numbers].sum()
    frame["cost_usd"] = grouped["cost_usd"].sum(min_count=1)
    frame["saved_usd"] = grouped["saved_usd"].sum()
    frame = _unknown_as_nan(frame)  # every call sent of unknown price: unknown, not 0
    return frame[["calls", "cached_calls", "unpriced_calls", "tokens", "cost_usd", "saved_usd"]]


def _unknown_as_nan(frame: pd.DataFrame) -> pd.DataFrame:
    """``cost_usd`` NaN where every call sent has an unknown price (as ``engine.spend``).

    ``saved_usd`` likewise where every cache hit's saving is unknown.
    """
    sent = frame["calls"] - frame["cached_calls"]
    unknown = (frame["unpriced_calls"] > 0) & (frame["unpriced_calls"] == sent)
    frame["cost_usd"] = frame["cost_usd"].astype("float64").mask(unknown)
    hits, unsaved = frame["cached_calls"], frame["unpriced_cached_calls"]
    saved = frame["saved_usd"].astype("float64").fillna(0.0)
    frame["saved_usd"] = saved.mask((unsaved > 0) & (unsaved == hits))
    return frame


def spent(engine: LLMEngine) -> tuple[pd.DataFrame, str]:
    """This session's calls by model and conversation: from the bus's log, else the engine."""
    bus = engine.bus
    run_sync(bus.wait_for_events())
    if bus.log_path is not None:
        import pandas as pd

        from llmgine.analysis import query

        calls = query(bus, _SPEND_SQL)
        rows = _map_rows_from_cache(bus)
        if not rows.empty:
            calls = rows if calls.empty else pd.concat([calls, rows], ignore_index=True)
        return _unknown_as_nan(calls), f"the log {bus.log_path.name}"
    frame = engine.spend.frame()  # its cost_usd is NaN where unknown
    return frame.reindex(columns=COLUMNS), "the default engine (the bus writes no log)"


def _map_rows_from_cache(bus: MessageBus) -> pd.DataFrame:
    """The ``map`` rows the cache answered before sending them, as :data:`COLUMNS` rows.

    They have no LLM call in the log: each chunk's lookup span counts them (one
    conversation line per ``map`` run). A span of an older llmgine without the counts
    is left out, or counted with an unknown saving.
    """
    import pandas as pd

    from llmgine.analysis import query

    spans = query(bus, f"SELECT * FROM spans WHERE name = '{_MAP_SPAN}'", types="TraceEvent")

    def attribute(name: str, default: Any) -> pd.Series[Any]:
        column = f"attributes.llmgine.map.{name}"
        if column not in spans.columns:
            return pd.Series(default, index=spans.index, dtype=object)
        return spans[column]

    answered = pd.to_numeric(attribute("answered", 0), errors="coerce").fillna(0).astype(int)
    saved = pd.to_numeric(attribute("saved_usd", None), errors="coerce")
    unpriced = pd.to_numeric(attribute("unpriced", None), errors="coerce")
    rows = pd.DataFrame(
        {
            "model": attribute("model", None).fillna("(unknown)").astype(str),
            "conversation_id": "map " + attribute("run", "?").astype(str),
            "calls": answered,
            "cached_calls": answered,
            "unpriced_calls": 0,
            # no saving written (an older span): every row's saving unknown
            "unpriced_cached_calls": unpriced.where(saved.notna() | unpriced.notna(), answered)
            .fillna(0)
            .astype(int),
            "tokens": 0,
            "cost_usd": 0.0,
            "saved_usd": saved.fillna(0.0),
        }
    )[answered > 0]
    if rows.empty:
        return rows.reindex(columns=COLUMNS)
    grouped = rows.groupby(["model", "conversation_id"], as_index=False, sort=True).sum()
    return grouped.reindex(columns=COLUMNS)


def _cell(row: Any) -> str:
    """One table cell: dollars, with calls of unknown price and the cache's saving apart."""
    cost = row.cost_usd if row.cost_usd == row.cost_usd else None  # NaN: unknown
    text = format_usd(cost)
    if row.unpriced_calls and cost is not None:
        text += f" + {int(row.unpriced_calls)} of unknown price"
    if row.cached_calls:
        saved = row.saved_usd if row.saved_usd == row.saved_usd else None  # NaN: unknown
        text += f" (saved {format_usd(saved)})"
    return text


def _table(frame: pd.DataFrame, what: str) -> list[str]:
    rows = [f"| {what} | calls | cached | tokens | cost |", "|---|---:|---:|---:|---|"]
    return rows + [_row(r) for r in frame.itertuples()]


def _row(r: Any) -> str:
    return (
        f"| `{r.Index}` | {int(r.calls):,} | {int(r.cached_calls):,} | {int(r.tokens):,} "
        f"| {_cell(r)} |"
    )


def cost(shell: Any, line: str, cell: str | None) -> Any:
    """This session's spend by model and by conversation (``r = %llmgine cost``: frames)."""
    calls, source = spent(get_runtime().get_engine())
    note = CostNote("", calls)
    if calls.empty:
        note.text = f"No LLM call yet in {source}."
        return note
    count = {
        name: int(calls[name].to_numpy().sum())
        for name in ("calls", "cached_calls", "unpriced_calls")
    }
    head = f"**{format_usd(note.usd)}** for {count['calls']:,} LLM calls"
    if count["unpriced_calls"]:
        head += f", {count['unpriced_calls']:,} of them of unknown price (not counted)"
    if count["cached_calls"]:
        unsaved = int(calls["unpriced_cached_calls"].to_numpy().sum())
        known = None if unsaved == count["cached_calls"] else float(calls["saved_usd"].sum())
        saved = format_usd(known)
        head += f"; {count['cached_calls']:,} answered by the cache, which saved {saved}"
    lines = [f"{head} (from {source})", "", *_table(note.by_model, "model"), ""]
    lines += _table(note.by_conversation, "conversation")
    note.text = "\n".join(lines)
    return note


# ---------------------------------------------------------------------------- the cache


def _answers(n: int) -> str:
    return f"{n:,} cached answer{'' if n == 1 else 's'}"


def _where(store: LLMCache) -> str:
    return f"`{store.path}`" if store.path is not None else store.store.location


def _default_where() -> str:
    """The default cache file, named without opening it (its folder may be unusable)."""
    from llmgine.llm.cache.paths import cache_file

    try:
        return f"`{cache_file()}`"
    except ConfigurationError:
        return "the default cache file"


def cache(shell: Any, line: str, cell: str | None) -> Any:
    """``cache on [PATH|redis]``, ``off``, ``clear`` or ``stats`` for the default engine."""
    from llmgine.llm.cache import LLMCache, open_cache

    words = split(line, "cache")
    action, rest = (words[0], words[1:]) if words else ("stats", [])
    runtime = get_runtime()
    engine = runtime.get_engine()
    policies = engine.policies
    current = policies.cache
    if action == "on" and len(rest) <= 1:
        if current is not None and not rest:
            return Note(f"the cache is already on: {_where(current)}")
        if rest == ["redis"] and engine.bus.remote is None:
            raise MagicError(
                "the bus is not connected to a shared bus, so there is no Redis to keep the "
                "cache in: run `%llmgine connect URL` first (e.g. `%llmgine connect "
                "redis://127.0.0.1:6379/0`), or `%llmgine cache on` for a local file"
            )
        opened = open_cache(rest[0] if rest else True, engine.bus)
        if opened is None:  # pragma: no cover - True, a path or "redis" always open one
            raise MagicError(f"no cache at {rest[0]!r}")
        policies.cache = opened
        policies.default_cache_on = True
        if current is not None:
            run_sync(current.aclose())
        return Note(
            f"cache on: a prompt asked before is answered from {_where(opened)}"
            " (no call, no cost); `PromptCommand(cache=False)` asks the model anyway"
        )
    if action == "off" and not rest:
        was_on = current is not None or policies.default_cache_on
        policies.cache = None
        policies.default_cache_on = False  # first: nothing below may keep the cache on
        if not was_on:
            return Note("the cache is already off")
        if current is not None:
            run_sync(current.aclose())
        kept = _where(current) if current is not None else _default_where()
        return Note(f"cache off: every prompt asks the model, `map` rows too ({kept} is kept)")
    if action == "clear" and not rest:
        target = current if current is not None else LLMCache()
        try:
            removed = run_sync(target.aclear())  # every cache on that file forgets it
        finally:
            if current is None:
                run_sync(target.aclose())
        return Note(f"removed {_answers(removed)} from {_where(target)}")
    if action == "stats" and not rest:
        try:
            used = current if current is not None else policies.default_cache()
        except ConfigurationError as exc:  # the default folder cannot be made
            return Note(
                "the cache is off for prompts and chats, and `map` rows cannot use the "
                f"default cache file: {exc} `%llmgine cache off` stops `map` from trying"
            )
        if used is None:
            return Note(
                "the cache is off (`map` rows too): `%llmgine cache on` answers repeated "
                "prompts for free"
            )
        if current is None and used.path is not None and not used.path.exists():
            return Note(
                "the cache is off for prompts and chats; `map` rows are answered from the "
                f"default file {_where(used)} (none yet); `%llmgine cache off` stops that too"
            )
        stats = run_sync(used.astats())
        figures = (
            f"{_where(used)}, {_answers(stats.entries)} "
            f"({stats.size_bytes / 1024:,.0f} KiB); this session {stats.hits:,} hits, "
            f"{stats.misses:,} misses ({stats.hit_rate:.0%} hit rate)"
        )
        if current is None:
            return Note(
                "the cache is off for prompts and chats, but `map` rows are answered from "
                f"the default file: {figures}; `%llmgine cache off` stops that too, "
                "`%llmgine cache on` caches every prompt"
            )
        return Note(f"cache on: {figures}")
    raise MagicError(
        f"usage: %llmgine cache on [PATH|redis] | off | clear | stats (not {line.strip()!r})"
    )
