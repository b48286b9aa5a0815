"""What a ``%llmgine`` subcommand shows: a :class:`Note` (its mistakes are ``MagicError``)."""

from __future__ import annotations

__all__ = ["Note"]


class Note:
    """A short message a magic displays (Markdown in a notebook, text in a terminal)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text
