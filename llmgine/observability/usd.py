"""Dollar amounts as people read them: ``$0.00045``, ``$0.0123``, ``$12.50``."""

from __future__ import annotations

import math

__all__ = ["format_usd"]

_MOST_DECIMALS = 10


def format_usd(value: float | None, *, unknown: str = "price unknown") -> str:
    """``value`` US dollars with the digits that matter: 3 significant ones below a cent.

    Args:
        value: The amount; ``None`` is a cost whose price is unknown (never shown as 0).
        unknown: What to show for ``None``.
    """
    if value is None or math.isnan(value):
        return unknown
    if value >= 1 or value == 0:
        return f"${value:,.2f}"
    decimals = min(_MOST_DECIMALS, max(2, 2 - math.floor(math.log10(abs(value)))))
    text = f"{value:.{decimals}f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"
