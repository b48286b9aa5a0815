"""What one reply of the chat panel cost: its LLM calls summed, and whether the cache answered."""

from __future__ import annotations

import html
from dataclasses import dataclass

from llmgine.llm.events import LLMResponseEvent
from llmgine.observability.usd import format_usd

__all__ = ["ReplyCost"]

_STYLE = "color:#6b7280;font-size:0.85em;padding:0 8px 4px"


@dataclass
class ReplyCost:
    """The LLM calls of one reply (a prompt may take several: tool rounds, retries of output)."""

    calls: int = 0
    cached_calls: int = 0
    """Calls the call cache answered (nothing sent, nothing spent)."""
    cost_usd: float | None = 0.0
    """US dollars; ``None`` once a call's price is unknown (never a total that is too low)."""
    saved_usd: float = 0.0
    """What the cached calls would have cost."""
    tokens: int = 0
    """Input and output tokens of the calls that were sent."""

    def add(self, event: LLMResponseEvent) -> None:
        """Count one answered call."""
        self.calls += 1
        if event.cached:
            self.cached_calls += 1
            self.saved_usd += event.cost_saved_usd or 0.0
            return
        self.tokens += event.usage.input_tokens + event.usage.output_tokens
        cost = event.cost_usd if event.cost_usd is not None else event.usage.cost_usd
        self.cost_usd = None if cost is None or self.cost_usd is None else self.cost_usd + cost

    @property
    def cached(self) -> bool:
        """Every call of the reply was answered from the cache."""
        return self.calls > 0 and self.cached_calls == self.calls

    def text(self) -> str:
        """``$0.00045 · 130 tokens``, ``cached · saved $0.00045``; ``""`` for no call."""
        if self.calls == 0:
            return ""
        if self.cached:
            return f"cached · saved {format_usd(self.saved_usd)}"
        parts = [format_usd(self.cost_usd), f"{self.tokens:,} tokens"]
        if self.cached_calls:
            parts.append(f"{self.cached_calls} of {self.calls} calls cached")
        return " · ".join(parts)

    def html(self) -> str:
        """:meth:`text` as the line under a reply (empty for no call)."""
        text = self.text()
        if not text:
            return ""
        return f"<div class='llmgine-cost' style='{_STYLE}'>{html.escape(text)}</div>"
