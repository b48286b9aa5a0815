"""One error tree: every exception class of llmgine lives in llmgine.errors, under LLMgineError."""

from __future__ import annotations

import importlib
import pkgutil
import re
import types

import pytest

import llmgine
import llmgine.errors
from llmgine.errors import LLMgineError


def llmgine_modules() -> list[types.ModuleType]:
    """Every module of the package that imports here (modules behind a missing extra do not)."""
    modules = [llmgine]
    for info in pkgutil.walk_packages(llmgine.__path__, "llmgine."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # importing it would run the command line
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError:
            continue  # an optional extra is not installed
    return modules


def exception_classes() -> dict[str, type[BaseException]]:
    """Each exception class defined at the top level of an llmgine module, by full name."""
    found: dict[str, type[BaseException]] = {}
    for module in llmgine_modules():
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and not issubclass(value, Warning)  # warnings are issued, not raised
                and value.__module__ == module.__name__
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_the_walk_finds_the_errors_of_the_tree() -> None:
    found = exception_classes()
    assert "llmgine.errors.ConfigurationError" in found
    assert "llmgine.errors.MagicError" in found


def test_every_exception_class_is_defined_in_errors_py() -> None:
    outside = {
        name for name, error in exception_classes().items() if error.__module__ != "llmgine.errors"
    }
    assert outside == set()


def test_every_error_of_errors_py_is_an_llmgine_error_drawn_in_the_tree() -> None:
    doc = llmgine.errors.__doc__ or ""
    for name, error in exception_classes().items():
        if error.__module__ != "llmgine.errors":
            continue
        assert issubclass(error, LLMgineError), name
        drawn = re.search(rf"^[ │├└─]*{error.__name__}\b", doc, re.MULTILINE)
        assert drawn, f"{name} is not drawn in the tree of errors.py's docstring"


def test_magic_and_query_errors_keep_their_old_homes_and_builtins() -> None:
    from llmgine.analysis import QueryError as AnalysisQueryError
    from llmgine.analysis.query import QueryError
    from llmgine.notebook import MagicError as NotebookMagicError
    from llmgine.notebook.subcommands import MagicError

    assert QueryError is AnalysisQueryError is llmgine.errors.QueryError is llmgine.QueryError
    assert MagicError is NotebookMagicError is llmgine.errors.MagicError is llmgine.MagicError
    assert issubclass(QueryError, ValueError)
    assert issubclass(MagicError, ValueError)


def test_a_magic_error_renders_as_one_line_in_ipython() -> None:
    error = llmgine.errors.MagicError("no such\n   subcommand")
    assert str(error) == "no such subcommand"
    assert error._render_traceback_() == ["llmgine: no such subcommand"]


def test_a_plot_of_something_the_log_lacks_is_a_configuration_error() -> None:
    import pandas as pd

    from llmgine.analysis import plots

    with pytest.raises(llmgine.errors.ConfigurationError, match="no spans to draw"):
        plots.plot_waterfall(pd.DataFrame())
    no_metrics = pd.DataFrame(columns=["name", "value", "timestamp"])
    with pytest.raises(llmgine.errors.ConfigurationError, match="No metric named 'nope'"):
        plots.plot_metric(no_metrics, "nope")


def test_a_local_server_used_before_it_starts_says_so_with_a_tree_error() -> None:
    from llmgine.local_server import LlamaServer
    from llmgine.testing import FakeOpenAIServer

    with pytest.raises(llmgine.errors.ServerNotStartedError, match="with FakeOpenAIServer"):
        _ = FakeOpenAIServer().base_url
    with pytest.raises(llmgine.errors.ServerNotStartedError, match="with LlamaServer"):
        _ = LlamaServer().base_url
    with pytest.raises(llmgine.errors.ServerNotStartedError, match="start"):
        LlamaServer().command()
    assert issubclass(llmgine.errors.ServerNotStartedError, RuntimeError)
