"""A script running ``df.llmgine.map`` over N rows, as a user's would: ``map_script.py URL N OUT``.

The engine has no cache of its own, so ``map`` keeps answers in the default cache file
(``$LLMGINE_CACHE_DIR``). It prints ``started`` before the batch and writes the result
frame to ``OUT`` (a pickle) when the batch is over. test_map_resume.py kills it halfway
and runs it again.
"""

from __future__ import annotations

import sys

import pandas as pd

import llmgine  # noqa: F401  (registers the df.llmgine accessor)
from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, OpenAIProvider


def rows(n: int) -> pd.DataFrame:
    """The frame the script maps (the test builds the same to check the answers)."""
    return pd.DataFrame(
        {"review": [f"review {i}" for i in range(n)], "stars": [i % 5 + 1 for i in range(n)]},
        index=pd.Index([f"r{i}" for i in range(n)], name="id"),
    )


def main() -> None:
    url, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    provider = OpenAIProvider("fake-gpt", api_key="sk-test", base_url=url, max_retries=0)
    engine = LLMEngine(bus, provider=provider, retries=None)
    print("started", flush=True)
    result = rows(n).llmgine.map(
        "Classify ({stars} stars): {review}", engine=engine, concurrency=4, progress=False
    )
    result.to_pickle(out)


if __name__ == "__main__":
    main()
