"""The public surface: explicit, sorted, complete, and light to import."""

from __future__ import annotations

import subprocess
import sys
import types

import llmgine
import llmgine.bus
import llmgine.errors
import llmgine.llm
import llmgine.messages
import llmgine.observability

SUBPACKAGES = [llmgine.bus, llmgine.errors, llmgine.llm, llmgine.messages, llmgine.observability]


def test_all_is_sorted_and_unique() -> None:
    assert llmgine.__all__ == sorted(set(llmgine.__all__))


def test_all_names_exist() -> None:
    missing = [name for name in llmgine.__all__ if not hasattr(llmgine, name)]
    assert missing == []


def test_every_public_name_of_the_package_is_in_all() -> None:
    public = {
        name
        for name, value in vars(llmgine).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in {"annotations", "Any"}
    }
    assert public - set(llmgine.__all__) == set()


def test_subpackage_surfaces_are_re_exported() -> None:
    for module in SUBPACKAGES:
        assert module.__all__ == sorted(module.__all__), module.__name__
        assert set(module.__all__) - set(llmgine.__all__) == set(), module.__name__


def test_errors_share_one_root_and_the_tree_is_drawn() -> None:
    doc = llmgine.errors.__doc__ or ""
    for name in llmgine.errors.__all__:
        error = getattr(llmgine.errors, name)
        assert issubclass(error, llmgine.LLMgineError)
        assert name in doc, f"{name} is missing from the tree in errors.py's docstring"


def test_import_llmgine_stays_light() -> None:
    heavy = ["pandas", "openai", "IPython", "ipywidgets", "matplotlib", "numpy", "genai_prices"]
    code = (
        "import sys, llmgine, llmgine.bus, llmgine.observability, llmgine.messages, llmgine.llm\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_evals_surface_is_sorted_light_and_its_run_names_are_re_exported() -> None:
    import llmgine.evals

    assert llmgine.evals.__all__ == sorted(set(llmgine.evals.__all__))
    assert all(hasattr(llmgine.evals, name) for name in llmgine.evals.__all__)
    for name in ("EvaluationEvent", "Experiment", "arun_experiment", "run_experiment"):
        assert getattr(llmgine, name) is getattr(llmgine.evals, name)
    code = (
        "import sys, llmgine.evals\n"
        "print([m for m in ('pandas', 'numpy', 'matplotlib', 'IPython') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
