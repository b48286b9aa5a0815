"""The ``df.llmgine`` accessor: ``map`` on any frame, the analysis functions on a loaded log.

Registered when this module is imported: by ``import llmgine`` when pandas is already
imported, by ``llmgine.analysis`` and ``llmgine.batch``, and by ``%load_ext llmgine``.
It imports nothing but pandas; each method imports what it needs when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from llmgine.batch import Template

__all__ = ["LLMgineAccessor"]


@pd.api.extensions.register_dataframe_accessor("llmgine")
class LLMgineAccessor:
    """``df.llmgine.map(...)`` on any frame; the analysis functions on a loaded log.

    On any DataFrame: ``.map(template, ...)``, one prompt per row (see
    :func:`llmgine.batch.amap`). On a frame from ``load_events``: ``.metrics()``,
    ``.spans()``, ``.traces()``, ``.commands()``, ``.llm_calls()``, ``.events(type)``
    and ``.plot_timeline()``.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self._given = frame

    @property
    def _frame(self) -> pd.DataFrame:
        """The frame, checked to be a log (every method but ``map`` reads a log)."""
        frame = self._given
        missing = [c for c in ("type", "data", "timestamp") if c not in frame.columns]
        if missing:
            from llmgine.analysis.loading import ENVELOPE_COLUMNS

            raise AttributeError(
                f"df.llmgine's log methods work on frames from load_events(); this one lacks "
                f"{missing} (expected columns: {', '.join(ENVELOPE_COLUMNS)}). On any frame, "
                "df.llmgine.map(template, ...) runs a prompt per row."
            )
        return frame

    def map(self, template: Template, **settings: Any) -> pd.DataFrame:
        """Run ``template`` as a prompt over every row; a frame of answers on this index.

        ``df.join(df.llmgine.map("Classify: {review}", engine=engine))``. The settings
        are :func:`llmgine.batch.amap`'s (``engine``, ``bus``, ``model``, ``output_type``,
        ``system_prompt``, ``concurrency``, ``errors``, ``progress``, request options).
        Synchronous: in a notebook cell it runs on the kernel's loop; an interrupt
        returns the rows that finished, and running it again sends only the others.
        """
        from llmgine.batch import map_rows

        return map_rows(self._given, template, **settings)

    def events(self, type: str | type) -> pd.DataFrame:
        """Rows of one type with payload columns; see :func:`events_frame`."""
        from llmgine.analysis.frames import events_frame

        return events_frame(self._frame, type)

    def metrics(self) -> pd.DataFrame:
        """One row per metric; see :func:`metrics_frame`."""
        from llmgine.analysis.frames import metrics_frame

        return metrics_frame(self._frame)

    def spans(self) -> pd.DataFrame:
        """One row per span; see :func:`spans_frame`."""
        from llmgine.analysis.spans import spans_frame

        return spans_frame(self._frame)

    def traces(self) -> pd.DataFrame:
        """One row per trace; see :func:`traces_frame`."""
        from llmgine.analysis.spans import traces_frame

        return traces_frame(self._frame)

    def commands(self) -> pd.DataFrame:
        """One row per command; see :func:`commands_frame`."""
        from llmgine.analysis.frames import commands_frame

        return commands_frame(self._frame)

    def llm_calls(self) -> pd.DataFrame:
        """One row per LLM call; see :func:`llm_calls_frame`."""
        from llmgine.analysis.frames import llm_calls_frame

        return llm_calls_frame(self._frame)

    def plot_timeline(self, trace_id: str | None = None, ax: Axes | None = None) -> Axes:
        """Draw a trace's waterfall (the latest trace by default); see :func:`plot_waterfall`."""
        from llmgine.analysis.plots import plot_waterfall
        from llmgine.analysis.spans import spans_frame

        return plot_waterfall(spans_frame(self._frame), trace_id=trace_id, ax=ax)
