"""Markdown to safe HTML for the widgets: raw HTML in messages is escaped, never rendered."""

from __future__ import annotations

import html
from functools import lru_cache
from typing import Any

__all__ = ["MarkdownStream", "details", "markdown"]


@lru_cache(maxsize=1)
def _parser() -> Any:
    from markdown_it import MarkdownIt

    # No images: a reply's ![x](https://...) would make the browser fetch that address as
    # soon as it is shown (a prompt injection's way out); it shows as a link instead.
    return (
        MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table").disable("image")
    )


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


class MarkdownStream:
    """Markdown rendered while it streams, in time linear in its length.

    Re-rendering the whole text on every delta is quadratic on long replies. Here
    the blocks that are finished (a later top-level block has started) are rendered
    once and handed out as frozen HTML; only the last, still growing block is
    rendered again on each delta.
    """

    def __init__(self) -> None:
        self.text = ""
        self._start = 0  # where the unfinished part of ``text`` begins

    def feed(self, delta: str) -> tuple[list[str], str]:
        """Add ``delta``; return the HTML of blocks finished by it, and of the unfinished tail."""
        self.text += delta
        tail = self.text[self._start :]
        tokens = _parser().parse(tail)
        starts = [t.map[0] for t in tokens if t.level == 0 and t.nesting >= 0 and t.map]
        frozen: list[str] = []
        if len(starts) > 1:
            lines = tail.splitlines(keepends=True)
            done = "".join(lines[: starts[-1]])
            frozen.append(markdown(done))
            self._start += len(done)
            tail = tail[len(done) :]
        return frozen, markdown(tail)
