"""What an engine's calls have cost: totals by model and by conversation (``engine.spend``).

A cost that is not known is never shown as 0: where every call of a group has an
unknown price (``cost_usd`` None) its cost is ``None`` (NaN in a frame); where only
some have, the cost is what the priced calls cost and ``unpriced_calls`` says how
many are left out, as in ``%llmgine cost`` and ``python -m llmgine log``. A cache hit
spends nothing (known: it sends nothing); what it saved is unknown when its price
is, and ``saved_usd`` follows the same rule (``unpriced_cached_calls``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from llmgine.llm.types import Usage

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Spend", "SpendLine"]


@dataclass(slots=True)
class SpendLine:
    """The calls of one model in one conversation."""

    calls: int = 0
    """Calls answered, cache hits included."""
    cached_calls: int = 0
    """Of the calls, those the call cache answered (nothing sent, nothing spent)."""
    unpriced_calls: int = 0
    """Calls whose price is unknown (``cost_usd`` None): ``cost_usd`` leaves them out."""
    unpriced_cached_calls: int = 0
    """Cache hits whose saving is unknown (the call's price was): ``saved_usd`` leaves
    them out."""
    input_tokens: int = 0
    cached_input_tokens: int = 0
    """Of the input tokens, those the server read from its prompt cache."""
    output_tokens: int = 0
    cost_usd: float = 0.0
    """What the priced calls cost, in US dollars (see :attr:`usd`: ``None`` if none is)."""
    saved_usd: float = 0.0
    """What the cache hits would have cost (see :attr:`saved`: ``None`` if unknown)."""

    def add(self, other: SpendLine) -> None:
        """Add ``other``'s counts to this line's."""
        self.calls += other.calls
        self.cached_calls += other.cached_calls
        self.unpriced_calls += other.unpriced_calls
        self.unpriced_cached_calls += other.unpriced_cached_calls
        self.input_tokens += other.input_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.output_tokens += other.output_tokens
        self.cost_usd += other.cost_usd
        self.saved_usd += other.saved_usd

    @property
    def tokens(self) -> int:
        """Input and output tokens spent."""
        return self.input_tokens + self.output_tokens

    @property
    def usd(self) -> float | None:
        """What the calls cost; ``None`` when the price of every call sent is unknown.

        Cache hits sent nothing and spent nothing: they leave it unknown (never 0).
        """
        if self.unpriced_calls and self.unpriced_calls == self.calls - self.cached_calls:
            return None
        return self.cost_usd

    @property
    def saved(self) -> float | None:
        """What the cache hits saved; ``None`` when every hit's saving is unknown."""
        if self.unpriced_cached_calls and self.unpriced_cached_calls == self.cached_calls:
            return None
        return self.saved_usd

    def summary(self) -> dict[str, Any]:
        """The line as a plain dict, with ``tokens`` (input + output).

        ``cost_usd`` is ``None`` when every call's price is unknown; ``unpriced_calls``
        says how many calls it leaves out (``saved_usd`` and ``unpriced_cached_calls``
        likewise for the cache hits).
        """
        return {
            **asdict(self),
            "cost_usd": self.usd,
            "saved_usd": self.saved,
            "tokens": self.tokens,
        }


class Spend:
    """What an engine's calls have cost so far, in this process: ``engine.spend``.

    Every answered call counts, by the model that answered (as in ``llm_calls_frame``)
    and by conversation; a cache hit counts as a call that spent nothing and saved
    what it would have cost. Read it as numbers (``usd``, ``tokens``, ``calls``),
    as a dict (:meth:`to_dict`, :meth:`by_model`, :meth:`by_conversation`) or as a
    DataFrame (:meth:`frame`). A budget over Redis counts the spend of every process;
    this counts the calls of this engine.
    """

    def __init__(self) -> None:
        self._lines: dict[tuple[str, str], SpendLine] = {}

    def record(
        self,
        model: str,
        conversation_id: str,
        usage: Usage,
        *,
        cached: bool = False,
        saved_usd: float | None = None,
    ) -> None:
        """Count one answered call.

        Args:
            model: The model that answered.
            conversation_id: The conversation it belongs to.
            usage: Its token counts and ``cost_usd``.
            cached: The call cache answered it: nothing was spent.
            saved_usd: On a cache hit, what the call would have cost.
        """
        line = self._lines.get((model, conversation_id))
        if line is None:
            line = self._lines[(model, conversation_id)] = SpendLine()
        line.calls += 1
        if cached:
            line.cached_calls += 1
            if saved_usd is None:
                line.unpriced_cached_calls += 1
            else:
                line.saved_usd += saved_usd
            return
        line.input_tokens += usage.input_tokens
        line.cached_input_tokens += usage.cached_input_tokens
        line.output_tokens += usage.output_tokens
        if usage.cost_usd is None:
            line.unpriced_calls += 1
        else:
            line.cost_usd += usage.cost_usd

    def clear(self) -> None:
        """Forget what was counted (a budget's counter is not changed)."""
        self._lines.clear()

    def _total(self) -> SpendLine:
        total = SpendLine()
        for line in self._lines.values():
            total.add(line)
        return total

    @property
    def usd(self) -> float | None:
        """US dollars spent by the priced calls; ``None`` when every call's price is unknown.

        When only some calls' price is unknown, this is what the others cost:
        ``to_dict()["unpriced_calls"]`` says how many are left out.
        """
        return self._total().usd

    @property
    def tokens(self) -> int:
        """Input and output tokens spent."""
        return sum(line.tokens for line in self._lines.values())

    @property
    def calls(self) -> int:
        """Calls answered, cache hits included."""
        return sum(line.calls for line in self._lines.values())

    def _by(self, index: int) -> dict[str, dict[str, Any]]:
        grouped: dict[str, SpendLine] = {}
        for key, line in self._lines.items():
            grouped.setdefault(key[index], SpendLine()).add(line)
        return {name: line.summary() for name, line in grouped.items()}

    def by_model(self) -> dict[str, dict[str, Any]]:
        """``{model: {"calls", "tokens", "cost_usd", "unpriced_calls", ...}}``.

        ``cost_usd`` is ``None`` for a model whose every call has an unknown price.
        """
        return self._by(0)

    def by_conversation(self) -> dict[str, dict[str, Any]]:
        """``{conversation_id: {"calls", "tokens", "cost_usd", "unpriced_calls", ...}}``.

        ``cost_usd`` is ``None`` for a conversation whose every call has an unknown price.
        """
        return self._by(1)

    def to_dict(self) -> dict[str, Any]:
        """Totals (``usd``, ``tokens``, ``calls``, ...), ``by_model`` and ``by_conversation``.

        ``usd`` is ``None`` when every call's price is unknown (see :attr:`usd`).
        """
        total = self._total()
        return {
            "usd": total.usd,
            "tokens": total.tokens,
            "calls": total.calls,
            "cached_calls": total.cached_calls,
            "unpriced_calls": total.unpriced_calls,
            "unpriced_cached_calls": total.unpriced_cached_calls,
            "saved_usd": total.saved,
            "by_model": self.by_model(),
            "by_conversation": self.by_conversation(),
        }

    def frame(self) -> pd.DataFrame:
        """One row per model and conversation: calls, tokens, ``cost_usd``, ``saved_usd``, ...

        ``cost_usd`` is NaN on a row whose every call has an unknown price; otherwise
        what its priced calls cost, ``unpriced_calls`` saying how many are left out
        (``saved_usd`` and ``unpriced_cached_calls`` likewise for the cache hits).
        """
        import pandas as pd

        columns = ["model", "conversation_id", *SpendLine.__dataclass_fields__, "tokens"]
        rows = [
            {"model": model, "conversation_id": conversation, **line.summary()}
            for (model, conversation), line in self._lines.items()
        ]
        frame = pd.DataFrame(rows, columns=columns)
        for column in ("cost_usd", "saved_usd"):  # None: NaN, never 0
            frame[column] = frame[column].astype("float64")
        return frame

    def __repr__(self) -> str:
        total = self._total()
        usd = total.usd
        cost = "price unknown" if usd is None else f"${usd:.4f}"
        unpriced = (
            f", {total.unpriced_calls} unpriced" if total.unpriced_calls and usd is not None else ""
        )
        return f"Spend({cost}, {total.tokens:,} tokens, {total.calls} calls{unpriced})"
