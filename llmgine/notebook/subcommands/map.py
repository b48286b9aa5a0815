"""``%%llmgine map DF``: the cell's body as a prompt template over every row of a frame.

The body is ``df.llmgine.map``'s template (``str.format`` over the columns); the rows run
on the notebook's default engine (see :func:`llmgine.batch.map_rows`), the answers are
shown as a DataFrame on ``DF``'s index and kept in the notebook as ``NAME`` (``--into``;
by default ``DF_mapped``), ready for ``DF.join(NAME)``.
"""

from __future__ import annotations

import builtins
import importlib
import keyword
from typing import Any

from pydantic import BaseModel

from llmgine.errors import MagicError
from llmgine.notebook.arguments import parser, split

__all__ = ["USAGE", "map_cell", "output_type"]

USAGE = "map DF [--model M] [--output-type T] [--concurrency N] [--into NAME] [--no-progress]"


def map_cell(shell: Any, line: str, cell: str | None) -> Any:
    """Run the body as a template over the rows of ``DF``; show and keep the answers."""
    from llmgine.batch import map_rows

    if cell is None:
        raise MagicError(
            "`map` is a cell magic: write `%%llmgine map DF` as the first line of a cell and "
            "the prompt below it, naming the columns in braces: `Classify this review: {review}`"
        )
    args = _arguments(line)
    template = cell.strip()
    if not template:
        raise MagicError(
            f"the cell is empty: write the prompt for each row of {args.frame} below "
            "`%%llmgine map`, naming its columns in braces, e.g. `Classify: {review}`"
        )
    frame = _frame(shell, args.frame)
    into = args.into or f"{args.frame}_mapped"
    if not into.isidentifier() or keyword.iskeyword(into):
        raise MagicError(f"--into needs a Python name to store the answers in, not {into!r}")
    result = map_rows(
        frame,
        template,
        model=args.model,
        output_type=output_type(shell, args.output_type) if args.output_type else None,
        concurrency=args.concurrency,
        progress=not args.no_progress,
    )
    shell.user_ns[into] = result
    return result


def _arguments(line: str) -> Any:
    options = parser("map")
    options.usage = f"%%llmgine {USAGE}"
    options.add_argument("frame", metavar="DF")
    options.add_argument("--model", default=None)
    options.add_argument("--output-type", default=None, metavar="T")
    options.add_argument("--concurrency", type=int, default=8, metavar="N")
    options.add_argument("--into", default=None, metavar="NAME")
    options.add_argument("--no-progress", action="store_true")
    return options.parse_args(split(line, "map"))


def _frame(shell: Any, name: str) -> Any:
    import pandas as pd

    if name not in shell.user_ns:
        raise MagicError(
            f"name {name!r} is not defined in this notebook: give the DataFrame to map over, "
            "e.g. `reviews = pd.read_csv('reviews.csv')` in a cell before"
        )
    frame = shell.user_ns[name]
    if not isinstance(frame, pd.DataFrame):
        raise MagicError(f"{name} is {_kind(frame)}, not a pandas DataFrame")
    return frame


def output_type(shell: Any, name: str) -> type[BaseModel]:
    """The pydantic model ``name`` names: in the notebook, or a dotted import path.

    ``Verdict`` (a class of the notebook), ``models.Verdict`` (an attribute of something
    the notebook defines, such as an imported module) or ``package.module.Verdict``.
    """
    found = _named(shell, name)
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise MagicError(
            f"--output-type {name} is {_kind(found)}, not a pydantic model: --output-type "
            "takes a class deriving from pydantic.BaseModel, whose fields become the columns"
            + _builtin_hint(found, name)
        )
    return found


def _builtin_hint(found: Any, name: str) -> str:
    """For ``int``, ``float``, ``bool``...: how to ask for one such value a row."""
    if not (isinstance(found, type) and found.__module__ == "builtins"):
        return ""
    return (
        f"; for one {found.__name__} a row, define `class Answer(BaseModel): value: "
        f"{found.__name__}` in a cell "
        "before and pass --output-type Answer (the column is value; without --output-type "
        "the answer is text, in the column output)"
    )


def _named(shell: Any, name: str) -> Any:
    head, *rest = name.split(".")
    if head in shell.user_ns:
        found = shell.user_ns[head]
        for part in rest:
            if not hasattr(found, part):
                raise MagicError(f"--output-type {name}: {head} has no attribute {part!r}")
            found = getattr(found, part)
        return found
    module_name, _, attribute = name.rpartition(".")
    if not module_name and hasattr(builtins, name):
        return getattr(builtins, name)  # int, str: refused as not a model, saying what is
    if not module_name:
        raise MagicError(
            f"--output-type {name}: no such name in this notebook; define the pydantic model "
            "in a cell before, or give its import path (package.module.Model)"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MagicError(f"--output-type {name}: cannot import {module_name} ({exc})") from None
    if not hasattr(module, attribute):
        raise MagicError(f"--output-type {name}: {module_name} has no attribute {attribute!r}")
    return getattr(module, attribute)


def _kind(value: Any) -> str:
    """What ``value`` is, for an error: ``a class``, ``a DataFrame``, ``a function``."""
    if isinstance(value, type):
        return "a class"
    return f"a {type(value).__name__}"
