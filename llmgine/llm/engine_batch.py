"""The engine's batch method: ``await engine.map(df, template, ...)``.

A thin front of :func:`llmgine.batch.amap`, imported when first used (it needs pandas).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from llmgine.batch import Template
    from llmgine.llm.engine import LLMEngine

__all__ = ["BatchMethods"]


class BatchMethods:
    """``LLMEngine.map``: one prompt over every row of a DataFrame."""

    async def map(self, frame: pd.DataFrame, template: Template, **settings: Any) -> pd.DataFrame:
        """Send ``template`` filled from each row of ``frame``; one row of answers each.

        Every row is a ``PromptCommand`` this engine runs, with its cache, limits,
        retries, fallback and budget. ``settings`` are :func:`llmgine.batch.amap`'s
        (``model``, ``output_type``, ``system_prompt``, ``concurrency``, ``errors``,
        ``progress``, request options); the frame it returns is described there.
        """
        from llmgine.batch import amap

        engine: LLMEngine = self  # type: ignore[assignment]  # a mixin of LLMEngine only
        return await amap(frame, template, engine=engine, **settings)
