"""A map template: checked against the frame's columns before any row, filled per row."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from llmgine.batch import RowTemplate
from llmgine.errors import ConfigurationError, TemplateError

FRAME = pd.DataFrame(
    {"review": ["good", None, "meh"], "stars": [5.0, math.nan, 3.0], "when": pd.NaT}
)


def row(position: int) -> pd.Series:  # type: ignore[type-arg]
    return FRAME.iloc[position]


def test_a_missing_column_names_it_and_the_columns_there_are() -> None:
    with pytest.raises(TemplateError) as info:
        RowTemplate("Classify {reveiw} ({stars})", FRAME.columns)
    message = str(info.value)
    assert "reveiw" in message
    assert "review, stars, when" in message
    assert isinstance(info.value, ConfigurationError | ValueError)


def test_each_missing_column_is_named_once() -> None:
    with pytest.raises(TemplateError, match=r"uses a, b, not a column"):
        RowTemplate("{a} {b} {a.x} {review}", FRAME.columns)


@pytest.mark.parametrize("template", ["Classify {}", "Classify {0}", "Classify {0[1]}"])
def test_a_positional_field_says_to_name_a_column(template: str) -> None:
    with pytest.raises(TemplateError, match="positional field"):
        RowTemplate(template, FRAME.columns)


@pytest.mark.parametrize("template", ['As JSON {"label": 1}: {review}', "a } b", "{review"])
def test_a_stray_brace_says_how_to_write_one(template: str) -> None:
    with pytest.raises(TemplateError, match=r"\{\{"):
        RowTemplate(template, FRAME.columns)


def test_doubled_braces_are_literal_ones() -> None:
    template = RowTemplate('As JSON {{"label": ...}}: {review}', FRAME.columns)
    assert template.render(row(0)) == 'As JSON {"label": ...}: good'


def test_a_template_that_is_neither_text_nor_function_is_refused() -> None:
    with pytest.raises(TemplateError, match="got int"):
        RowTemplate(42, FRAME.columns)  # type: ignore[arg-type]


def test_missing_values_are_empty_and_others_format_as_str_format_does() -> None:
    template = RowTemplate("[{review}] [{stars}] [{when}] [{stars:.1f}]", FRAME.columns)
    assert template.render(row(0)) == "[good] [5.0] [] [5.0]"
    assert template.render(row(2)) == "[meh] [3.0] [] [3.0]"
    assert template.render(row(1)) == "[] [] [] []"  # missing, format spec or not
    assert RowTemplate("{review!r:>6}|{when:%Y}", FRAME.columns).render(row(1)) == "|"


def test_attribute_and_index_fields_start_with_a_column() -> None:
    frame = pd.DataFrame({"tags": [["a", "b"]], "name": ["x"]})
    template = RowTemplate("{tags[1]} {name.upper}", frame.columns)
    assert template.render(frame.iloc[0]).startswith("b <built-in method upper")


def test_numbered_column_labels_are_fields_too() -> None:
    frame = pd.DataFrame([["one", "two"]])  # read_csv(header=None) labels columns 0, 1
    assert RowTemplate("{0} and {1}", frame.columns).render(frame.iloc[0]) == "one and two"
    with pytest.raises(TemplateError, match="no column labelled 2"):
        RowTemplate("{2}", frame.columns)


def test_a_column_named_twice_is_ambiguous() -> None:
    frame = pd.DataFrame([["a", "b", "c"]], columns=["text", "text", "other"])
    with pytest.raises(TemplateError, match="2 columns named 'text'"):
        RowTemplate("{text}", frame.columns)
    assert RowTemplate("{other}", frame.columns).render(frame.iloc[0]) == "c"


def test_a_function_gets_the_row_and_must_return_text() -> None:
    template = RowTemplate(lambda r: f"{r['review']}!", FRAME.columns)
    assert template.render(row(0)) == "good!"
    wrong = RowTemplate(lambda r: 3, FRAME.columns)
    with pytest.raises(TypeError, match="returned int, not str"):
        wrong.render(row(0))


def test_a_missing_column_inside_a_format_spec_fails_before_any_row() -> None:
    with pytest.raises(TemplateError, match=r"uses width, not a column.*review, stars, when"):
        RowTemplate("{review:>{width}}", FRAME.columns)


def test_a_column_inside_a_format_spec_is_filled_from_the_row() -> None:
    frame = pd.DataFrame({"a": ["x"], "w": [3]})
    assert RowTemplate("[{a:>{w}}]", frame.columns).render(frame.iloc[0]) == "[  x]"


def test_an_unknown_conversion_fails_before_any_row() -> None:
    with pytest.raises(TemplateError, match=r"\{review!x\}.*!r, !s and !a"):
        RowTemplate("{review!x}", FRAME.columns)


def test_a_column_named_with_a_dot_says_a_string_template_cannot_reach_it() -> None:
    with pytest.raises(TemplateError, match=r"column 'a\.b' cannot be reached"):
        RowTemplate("{a.b}", ["a.b", "review"])


@pytest.mark.parametrize("cell", [[None], [math.nan], np.array([np.nan]), ["a"]])
def test_a_list_of_missing_values_in_a_cell_is_a_value(cell: object) -> None:
    assert RowTemplate("tags={tags}", ["tags"]).render_cells([cell]) == f"tags={cell}"
