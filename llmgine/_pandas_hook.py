"""``df.llmgine`` on every DataFrame, whichever of llmgine and pandas is imported first.

``import llmgine`` must not import pandas (it stays light), yet a user who writes
``import llmgine`` and then ``import pandas as pd`` expects ``df.llmgine.map``. So: when
pandas is loaded already, the accessor is registered now; otherwise a finder waits on
``sys.meta_path`` for pandas's own import and registers the accessor right after it
(the post-import hook of PEP 369, kept to one module), then removes itself.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["register_when_pandas_loads"]


def _register() -> None:
    import llmgine._accessor  # noqa: F401 (registers df.llmgine)


class _AfterPandas(importlib.abc.MetaPathFinder):
    """Finds pandas through the other finders and runs :func:`_register` after it loads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "pandas":
            return None
        with self._lock:
            if self not in sys.meta_path:
                return None
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        loader: Any = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_register(module: ModuleType) -> None:
            exec_module(module)
            _register()

        loader.exec_module = exec_then_register
        return spec


def register_when_pandas_loads() -> None:
    """Register ``df.llmgine`` now if pandas is loaded, else right after pandas loads."""
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        if hasattr(pandas, "api"):  # else pandas is still loading and imported us: skip
            _register()
    elif not any(isinstance(f, _AfterPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterPandas())
