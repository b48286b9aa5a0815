"""One prompt over every row of a DataFrame: ``map``, with progress, limits and resume.

``df.llmgine.map("Classify: {review}", engine=engine)`` in a notebook cell,
``await engine.map(df, ...)`` or ``await amap(df, ...)`` in async code. See
:func:`amap` for every setting and the frame it returns.
"""

import llmgine._accessor  # noqa: F401 (registers df.llmgine)
from llmgine.batch.api import amap, map_rows
from llmgine.batch.template import RowTemplate, Template

__all__ = ["RowTemplate", "Template", "amap", "map_rows"]
