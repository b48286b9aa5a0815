"""The FAQ the LLM may search (a tool)."""

from __future__ import annotations

_FAQ = {
    "billing": "Refunds reach your card within 5 working days.",
    "access": "Reset your password from the login page; locked accounts unlock after 30 minutes.",
    "shipping": "Parcels ship within 2 days; the tracking link is in your confirmation email.",
    "other": "A human will get back to you within one working day.",
}


def search_faq(category: str) -> str:
    """Find the FAQ answer for a ticket category.

    Args:
        category: One of billing, access, shipping or other.
    """
    return _FAQ.get(category, _FAQ["other"])
