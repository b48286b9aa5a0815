"""An experiment on a real model: llama.cpp serving SmolLM2-135M-Instruct, two variants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from llmgine.bus import MessageBus
from llmgine.evals import arun_experiment, contains
from llmgine.llm import LLMEngine, OpenAIProvider
from llmgine.local_server import LlamaServer

ANIMALS = pd.DataFrame(
    {"animal": ["cat", "dog", "cow"], "sound": ["meow", "woof", "moo"]},
)


def answered(output: Any, expected: Any, row: Any) -> bool:
    return bool(str(output or "").strip())


@pytest.mark.timeout(300)
async def test_two_variants_on_the_local_model_are_run_scored_and_summarised(
    llama_server: LlamaServer, tmp_path: Path
) -> None:
    provider = OpenAIProvider(
        llama_server.model, base_url=llama_server.base_url, api_key="none", max_retries=0
    )
    bus = MessageBus(
        log_dir=tmp_path / "logs",
        log_filename="run.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
    )
    async with bus:
        engine = LLMEngine(bus, provider=provider, cache=tmp_path / "calls.sqlite3")
        experiment = await arun_experiment(
            ANIMALS,
            "What sound does a {animal} make? One word.",
            variants={
                "plain": {"options": {"temperature": 0, "max_tokens": 12}},
                "expert": {
                    "system_prompt": "You are a zoologist. Answer with one word.",
                    "options": {"temperature": 0, "max_tokens": 12},
                },
            },
            scorers=[answered, contains],
            expected="sound",
            concurrency=2,
            engine=engine,
            progress=False,
        )
        await engine.aclose()  # the kept-alive connections to the server
    results = experiment.results
    assert results["error"].isna().all(), results["error"].dropna().tolist()
    assert len(results) == 6
    assert (results["output_tokens"] > 0).all() and (results["input_tokens"] > 0).all()
    assert results["model"].eq(llama_server.model).all()
    summary = experiment.summary()
    assert list(summary.index) == ["plain", "expert"]
    assert summary["n"].tolist() == [3, 3]
    assert summary["score.answered"].tolist() == [1.0, 1.0]
    assert summary["score.contains"].between(0.0, 1.0).all()
    assert (summary["latency_p50_ms"] > 0).all()
    # the system prompt reached the server: the expert's prompts are longer
    by_variant = results.groupby("variant", sort=False)["input_tokens"].sum()
    assert by_variant["expert"] > by_variant["plain"]
