"""Ctrl-C (or the kernel's stop button) during a sync run_experiment stops sending."""

from __future__ import annotations

import asyncio
import signal

import pandas as pd
import pytest

from llmgine.bus import MessageBus
from llmgine.evals import exact_match, run_experiment
from llmgine.llm import LLMEngine
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import Completion, LLMRequest
from llmgine.notebook.sync import run_sync

pytestmark = pytest.mark.timeout(120)


class Stopped(Provider):
    """Answers ``answer to <prompt>``; the ``at``-th call is interrupted and every call
    from then on waits until cancelled (the rows in flight when the interrupt comes).

    ``how`` is ``"signal"`` (a real SIGINT, pressed from a loop callback) or ``"raise"``
    (``KeyboardInterrupt`` raised in the row's own task).
    """

    name = "stopped"

    def __init__(self, at: int, how: str) -> None:
        super().__init__("stopped-1")
        self.at, self.how = at, how
        self.calls = self.answered = self.in_flight = self.cancelled = 0

    async def complete(self, request: LLMRequest) -> Completion:
        self.calls += 1
        if self.calls == self.at and self.how == "raise":
            raise KeyboardInterrupt
        if self.calls == self.at:
            asyncio.get_running_loop().call_soon(signal.raise_signal, signal.SIGINT)
        self.in_flight += 1
        try:
            if 0 < self.at <= self.calls:
                await asyncio.Event().wait()
            await asyncio.sleep(0)
            self.answered += 1
            return Completion(content=f"answer to {request.messages[-1].content}")
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("how", ["signal", "raise"])
def test_an_interrupted_sync_experiment_cancels_its_rows_and_a_rerun_sends_the_rest(
    how: str,
) -> None:
    bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    model = Stopped(at=6, how=how)
    engine = LLMEngine(bus, provider=model)
    data = pd.DataFrame({"q": [f"question {i}" for i in range(20)], "a": ["x"] * 20})
    run = dict(
        data=data,
        prompt="{q}",
        variants={"a": {}, "b": {"system_prompt": "Be brief."}},
        scorers=[exact_match],
        expected="a",
        engine=engine,
        concurrency=3,
        progress=False,
    )
    with pytest.raises(KeyboardInterrupt):
        run_experiment(**run)
    assert model.in_flight == 0  # the rows in flight were cancelled, not left running
    sent, answered = model.calls, model.answered
    assert 0 < answered <= 5 and model.cancelled == sent - answered - (how == "raise")
    model.at = 0  # answers every call now
    experiment = run_experiment(**run)
    assert model.calls == sent + 2 * 20 - answered  # only what had not finished, once
    assert experiment.results["error"].isna().all()
    assert experiment.results["cached"].sum() == answered
    run_sync(bus.stop())
