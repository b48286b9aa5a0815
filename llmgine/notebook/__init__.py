"""The notebook layer: ``%llmgine`` magics, the kernel's default bus and engine, widgets.

The widgets live in :mod:`llmgine.notebook.widgets` (ipywidgets is imported there).
"""

from llmgine.errors import MagicError
from llmgine.notebook.magics import LLMgineMagics, load_ipython_extension
from llmgine.notebook.notes import Note
from llmgine.notebook.runtime import Runtime, get_bus, get_engine, get_runtime, set_engine
from llmgine.notebook.sync import run_sync

__all__ = [
    "LLMgineMagics",
    "MagicError",
    "Note",
    "Runtime",
    "get_bus",
    "get_engine",
    "get_runtime",
    "load_ipython_extension",
    "run_sync",
    "set_engine",
]
