"""Tiny HTML helpers for rich display (``_repr_html_``); every value is escaped."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any

__all__ = ["escape_value", "table"]

_MAX = 300


def escape_value(value: Any) -> str:
    """Return ``value`` as escaped HTML text, long values shortened."""
    if not isinstance(value, dict | list | tuple | int | float | bool | None):
        text = str(value)
    else:
        try:
            text = json.dumps(value, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > _MAX:
        text = text[: _MAX - 1] + "…"
    return html.escape(text)


def table(title: str, rows: Iterable[tuple[str, Any]], *, css_class: str = "llmgine") -> str:
    """An HTML table of ``(name, value)`` rows under a bold title."""
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
        f"<td style='text-align:left'><code>{escape_value(v)}</code></td></tr>"
        for k, v in rows
    )
    return f"<div class='{css_class}'><b>{html.escape(title)}</b><table>{body}</table></div>"
