"""ipywidgets for the bus and the engine; every button has a Python method."""

from llmgine.notebook.widgets.chat import ChatWidget
from llmgine.notebook.widgets.form import CommandForm
from llmgine.notebook.widgets.monitor import BusMonitor

__all__ = ["BusMonitor", "ChatWidget", "CommandForm"]
