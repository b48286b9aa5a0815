"""The ``%llmgine`` line magic and ``%%llmgine`` cell magic."""

from __future__ import annotations

import ast
import logging
import re
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand

from llmgine.errors import LLMgineError, MagicError
from llmgine.notebook.subcommands import SUBCOMMANDS, help_text

__all__ = ["LLMgineMagics"]

logger = logging.getLogger(__name__)


@magics_class
class LLMgineMagics(Magics):
    """``%llmgine SUBCOMMAND ...``, cells ``%%llmgine chat`` and ``map``; see ``%llmgine help``."""

    @no_var_expand  # prompts keep their braces and $ signs
    @line_cell_magic
    def llmgine(self, line: str, cell: str | None = None) -> Any:
        """Drive the llmgine bus and engine from cells (the full table is set below)."""
        name, _, rest = line.strip().partition(" ")
        subcommand = SUBCOMMANDS.get(name)
        if subcommand is None:
            known = ", ".join(SUBCOMMANDS)
            what = f"unknown subcommand {name!r}" if name else "no subcommand given"
            raise MagicError(f"{what}; use one of: {known} (`%llmgine help`)")
        if cell is not None and name not in ("chat", "map"):
            raise MagicError(
                "only `%%llmgine chat` takes a cell body (the prompt), and `%%llmgine map` "
                "(the template over a DataFrame's rows)"
            )
        if not subcommand.takes_arguments and rest.strip():
            raise MagicError(
                f"`%llmgine {name}` takes no arguments; got {rest.strip()!r} "
                f"(usage: `%llmgine {subcommand.usage}`)"
            )
        try:
            return subcommand.run(self.shell, rest, cell)
        except MagicError:
            raise
        except LLMgineError as exc:
            raise MagicError(str(exc)) from None
        except Exception as exc:
            # Never a wall of internals in a cell: one line, the details in the Python log.
            logger.debug("%%llmgine %s failed", name, exc_info=exc)
            raise MagicError(f"{name} failed: {type(exc).__name__}: {exc}") from None


LLMgineMagics.llmgine.__doc__ = f"""Drive the llmgine bus and engine from notebook cells.

Subcommands (``%llmgine help`` shows this table in a notebook)::

{help_text()}
"""


# ``%llmgine ...?`` alone or assigned (``r = %llmgine chat Is it sunny?``): indent, target
# (any text up to an ``=``; :func:`_is_target` says whether it is an assignment's target).
_MAGIC_LINE = re.compile(r"(?P<indent>\s*)(?P<target>.*?=\s*)?%llmgine (?P<rest>.*\?)")


def _is_target(text: str) -> bool:
    """Whether ``text`` (``"answers['q1'] ="``) is what Python assigns to, its ``=`` included."""
    try:
        tree = ast.parse(f"{text.strip()} 0")
    except (SyntaxError, ValueError):
        return False  # ``x ==``, ``f(x=``: not an assignment
    return len(tree.body) == 1 and isinstance(tree.body[0], ast.Assign | ast.AnnAssign)


def keep_question_marks(lines: list[str]) -> list[str]:
    """Let ``%llmgine`` lines end in ``?``: IPython would take them as help requests.

    ``%llmgine chat Is it sunny in Paris?`` becomes a direct call of the magic, so
    the question reaches the model; so does an assigned one (``r = %llmgine ...?``,
    ``r`` any target: a name, an attribute, a subscript such as ``answers["q1"]``,
    a tuple). ``%llmgine?`` alone still shows the help.
    """
    if lines and lines[0].startswith("%%"):
        return lines  # a cell magic's body is passed as written
    out = []
    quote: str | None = None  # the triple quote of a string still open at this line
    for line in lines:
        found = _MAGIC_LINE.fullmatch(line.rstrip()) if quote is None else None
        if found is not None and (found["target"] is None or _is_target(found["target"])):
            rest = found["rest"].strip()
            target = found["target"] or ""
            line = f"{found['indent']}{target}get_ipython().run_line_magic('llmgine', {rest!r})\n"
        else:
            quote = _open_triple_quote(line, quote)
        out.append(line)
    return out


def _open_triple_quote(line: str, quote: str | None) -> str | None:
    """The triple quote left open after ``line``, given the one open before it."""
    i = 0
    while i < len(line):
        if quote is not None:
            end = line.find(quote, i)
            if end < 0:
                return quote
            i, quote = end + 3, None
            continue
        char = line[i]
        if char == "#":
            return None
        if char in "'\"":
            if line.startswith(char * 3, i):
                quote, i = char * 3, i + 3
                continue
            end = i + 1  # a one-line string: skip it, escapes included
            while end < len(line) and line[end] != char:
                end += 2 if line[end] == "\\" else 1
            i = end + 1
            continue
        i += 1
    return quote


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (``%load_ext llmgine``); nothing is started until used."""
    ipython.register_magics(LLMgineMagics)
    if keep_question_marks not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(keep_question_marks)
