"""``map``'s progress bar: rows done of total, errors, tokens and cost so far (``?``: unknown)."""

from __future__ import annotations

from typing import Any

from llmgine.batch.outcome import RowOutcome

__all__ = ["Progress"]


class Progress:
    """A ``tqdm.auto`` bar (a widget in Jupyter, text in a terminal), or nothing.

    Args:
        total: The rows of the batch.
        enabled: ``False`` shows nothing (the counts are still kept).
        description: The bar's label.
    """

    def __init__(self, total: int, *, enabled: bool = True, description: str = "map") -> None:
        self.total = total
        self.done = 0
        self.errors = 0
        self.tokens = 0
        self.cost_usd = 0.0
        """What the rows of known price cost."""
        self.priced = 0
        """Rows with a known cost (a cache hit's is 0)."""
        self.unpriced = 0
        """Rows answered, or that spent tokens, at an unknown price: not in ``cost_usd``."""
        self.cached = 0
        self._bar: Any = None
        self._closed = False
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=description, unit="row", dynamic_ncols=True)
            self._bar.set_postfix_str(self._postfix(), refresh=False)

    def _postfix(self) -> str:
        return (
            f"errors={self.errors} tokens={self.tokens:,} cost={self.cost_text()} "
            f"cached={self.cached}"
        )

    def cost_text(self) -> str:
        """The cost so far, an unknown price never counted as 0.

        ``$0.0240``; ``?`` when no row's price is known; ``$0.0240+?`` when some rows'
        are not.
        """
        if self.unpriced and self.priced == 0:
            return "?"
        return f"${self.cost_usd:.4f}" + ("+?" if self.unpriced else "")

    def add(self, outcome: RowOutcome) -> None:
        """Count one finished row."""
        self.done += 1
        self.errors += outcome.failed
        self.tokens += (outcome.input_tokens or 0) + (outcome.output_tokens or 0)
        if outcome.cost_usd is not None:
            self.priced += 1
            self.cost_usd += outcome.cost_usd
        elif not outcome.failed or outcome.input_tokens is not None:
            self.unpriced += 1  # answered (or spent tokens) at a price not known
        self.cached += bool(outcome.cached)
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(1)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran (or no bar was shown and the run ended)."""
        return self._closed

    def close(self) -> None:
        """Draw the final counts and end the bar."""
        self._closed = True
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.close()
            self._bar = None
