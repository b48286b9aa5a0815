"""Markdown to safe HTML for the widgets: raw HTML in messages is escaped, never rendered."""

from __future__ import annotations

import html
from functools import lru_cache
from typing import Any

__all__ = ["details", "markdown"]


@lru_cache(maxsize=1)
def _parser() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table")


def markdown(text: str) -> str:
    """Render ``text`` as Markdown; any HTML in it shows as text."""
    return str(_parser().render(text))


def details(summary: str, body: str, *, open_: bool = False) -> str:
    """A collapsible block; both parts are escaped."""
    state = " open" if open_ else ""
    return (
        f"<details{state}><summary>{html.escape(summary)}</summary>"
        f"<pre style='white-space:pre-wrap;margin:0'>{html.escape(body)}</pre></details>"
    )
