"""A ``map`` template: the prompt of each row, from ``str.format`` or a function of the row."""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from llmgine.errors import TemplateError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RowTemplate", "Template"]

Template = str | Callable[["pd.Series[Any]"], str]
"""A ``str.format`` string over the row's columns (``"Classify: {review}"``) or a
function of the row (a ``pandas.Series`` indexed by the columns) returning the prompt."""


def _is_missing(value: Any) -> bool:
    """NaN, None, ``pd.NA`` and ``NaT``: a cell with no value (a list of them is a value)."""
    import pandas as pd

    if not pd.api.types.is_scalar(value):  # a list, an array, a dict in a cell: a value
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


_MISSING = object()
"""A cell with no value: filled as an empty string, whatever its format spec."""


class _Cells(Mapping[str, Any]):
    """A row's cells by column name (as text), a missing value as :data:`_MISSING`."""

    def __init__(self, cells: Mapping[str, Any]) -> None:
        self._cells = cells

    def __getitem__(self, key: str) -> Any:
        value = self._cells[key]
        return _MISSING if _is_missing(value) else value

    def __iter__(self) -> Any:
        return iter(self._cells)

    def __len__(self) -> int:
        return len(self._cells)


class _RowFormatter(string.Formatter):
    """``str.format`` over a row's cells.

    ``{0}`` names a column labelled 0, and a missing value is an empty string even with
    a format spec (``{price:.2f}``).
    """

    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        return kwargs[str(key)]

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        return value if value is _MISSING else super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        return "" if value is _MISSING else format(value, format_spec)


_FORMATTER = _RowFormatter()


def _fields(template: str) -> list[str]:
    """Every ``{field}`` of ``template``, those inside a format spec (``{a:>{width}}``) too.

    Raises:
        TemplateError: A stray brace, or a conversion other than ``!r``, ``!s``, ``!a``.
    """
    try:
        parsed = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template)]
    except ValueError as exc:
        raise TemplateError(
            f"The template is not a str.format string ({exc}); write a literal brace as "
            "{{ or }}, e.g. 'Answer as JSON like {{\"label\": ...}}: {review}'."
        ) from exc
    fields: list[str] = []
    for field, spec, conversion in parsed:
        if field is None:
            continue
        if conversion not in (None, "r", "s", "a"):
            raise TemplateError(
                f"The template's field {{{field}!{conversion}}} has an unknown conversion "
                f"!{conversion}; str.format knows !r, !s and !a (or write none)."
            )
        fields.append(field)
        if spec:
            fields += _fields(spec)
    return fields


def _field_roots(template: str) -> list[tuple[str, str]]:
    """Each ``{field}`` of ``template`` with the column it starts with, in order."""
    roots = []
    for field in _fields(template):
        root = field.split(".", 1)[0].split("[", 1)[0]
        if root == "":
            raise TemplateError(
                f"The template has a positional field {{{field}}}; name a column instead, "
                "e.g. {review}."
            )
        roots.append((root, field))
    return roots


class RowTemplate:
    """Turns one row into its prompt; checked against the frame's columns before any row.

    A string template is ``str.format`` with the row's columns as names (``{0}`` for a
    column labelled 0); a missing value (NaN, None, NA, NaT) becomes an empty string,
    format spec or not, and any other value is formatted as ``str.format`` does
    (``{price:.2f}`` works on a number). A function gets the row as a ``pandas.Series``
    and must return a string.

    Args:
        template: The template.
        columns: The frame's columns.

    Raises:
        TemplateError: The template names a column the frame does not have (or has
            twice), has a positional ``{}`` or a stray brace, or is neither a string nor
            a function.
    """

    def __init__(self, template: Template, columns: Iterable[Any]) -> None:
        self.columns = [str(c) for c in columns]
        if isinstance(template, str):
            found = _field_roots(template)
            roots = list(dict.fromkeys(root for root, _ in found))
            missing = [r for r in roots if r not in self.columns]
            dotted = [f for r, f in found if f != r and f in self.columns]
            if dotted:
                raise TemplateError(
                    f"The template's {{{dotted[0]}}} reads an attribute or item of a column "
                    f"{dotted[0].split('.', 1)[0].split('[', 1)[0]!r} (str.format), so the "
                    f"column {dotted[0]!r} cannot be reached by a string template: rename it "
                    "first (df.rename(columns=...)) or pass a function of the row."
                )
            numbered = [r for r in missing if r.isdigit()]
            if numbered:
                raise TemplateError(
                    f"The template has a positional field {{{numbered[0]}}} and the frame has no "
                    f"column labelled {numbered[0]}; name a column instead, e.g. {{review}}."
                )
            if missing:
                there = ", ".join(self.columns) or "none"
                raise TemplateError(
                    f"The template uses {', '.join(missing)}, not a column of this frame "
                    f"(its columns: {there}). Rename the field, or add the column first; "
                    "braces meant as text (JSON) are written {{ and }}."
                )
            repeated = [r for r in roots if self.columns.count(r) > 1]
            if repeated:
                raise TemplateError(
                    f"The frame has {self.columns.count(repeated[0])} columns named "
                    f"{repeated[0]!r}, so {{{repeated[0]}}} is ambiguous: rename them first "
                    "(df.columns = [...])."
                )
        elif not callable(template):
            raise TemplateError(
                f"A template is a str.format string or a function of the row; got "
                f"{type(template).__name__}."
            )
        self.template = template

    def render(self, row: pd.Series[Any]) -> str:
        """The prompt of ``row``.

        Raises:
            Exception: Whatever filling the template raised (a bad format spec for
                this row's value, the function's own error); ``map`` makes it the
                row's ``error``.
        """
        if isinstance(self.template, str):
            return self.render_cells(row.tolist())
        prompt = self.template(row)
        if not isinstance(prompt, str):
            raise TypeError(f"the template function returned {type(prompt).__name__}, not str")
        return prompt

    def render_cells(self, cells: list[Any]) -> str:
        """The prompt of a row given as its cells in column order (a string template only)."""
        assert isinstance(self.template, str), "a function template takes the row: render()"
        return _FORMATTER.vformat(
            self.template, (), _Cells(dict(zip(self.columns, cells, strict=True)))
        )
