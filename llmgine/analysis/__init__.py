"""Log analysis: llmgine JSONL logs as pandas DataFrames, with plots.

Importing this module registers the ``df.llmgine`` accessor. It needs pandas,
DuckDB and matplotlib, which ``import llmgine`` alone never loads.
"""

from llmgine.analysis.accessor import LLMgineAccessor
from llmgine.analysis.frames import commands_frame, events_frame, llm_calls_frame, metrics_frame
from llmgine.analysis.loading import ENVELOPE_COLUMNS, LogReadWarning, load_events
from llmgine.analysis.plots import plot_command_latency, plot_metric, plot_waterfall
from llmgine.analysis.query import QueryError, query
from llmgine.analysis.span_view import SpansFrame
from llmgine.analysis.spans import spans_frame, traces_frame
from llmgine.analysis.summary import summarize

__all__ = [
    "ENVELOPE_COLUMNS",
    "LLMgineAccessor",
    "LogReadWarning",
    "QueryError",
    "SpansFrame",
    "commands_frame",
    "events_frame",
    "llm_calls_frame",
    "load_events",
    "metrics_frame",
    "plot_command_latency",
    "plot_metric",
    "plot_waterfall",
    "query",
    "spans_frame",
    "summarize",
    "traces_frame",
]
