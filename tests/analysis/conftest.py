"""A real log from a real bus: commands that fail, nested spans, metrics, LLM calls with tools."""

from __future__ import annotations

import asyncio
from pathlib import Path

import matplotlib
import pytest

from llmgine import Metric, MetricEvent
from llmgine.bus import MessageBus
from llmgine.llm import Completion, LLMEngine, ScriptedProvider, ToolCall, Usage
from llmgine.messages import Command

matplotlib.use("Agg")


class StepCommand(Command):
    n: int


class PipelineCommand(Command):
    steps: int


def double(x: int) -> int:
    """Double a number.

    Args:
        x: The number.
    """
    return 2 * x


async def _record(log_dir: Path) -> Path:
    bus = MessageBus(
        log_dir=log_dir,
        log_filename="run.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
    )

    def step(cmd: StepCommand) -> int:
        if cmd.n == 2:
            raise ValueError("step 2 always fails")
        return cmd.n

    async def pipeline(cmd: PipelineCommand) -> int:
        total = 0
        async with bus.span("load", rows=cmd.steps):
            for n in range(cmd.steps):
                result = await bus.execute(StepCommand(n=n))
                total += result.result or 0
        return total

    bus.register_command_handler(StepCommand, step)
    bus.register_command_handler(PipelineCommand, pipeline)
    provider = ScriptedProvider(
        [
            Completion(
                tool_calls=[ToolCall(id="c1", name="double", arguments='{"x": 21}')],
                finish_reason="tool_calls",
                usage=Usage(input_tokens=100, output_tokens=10),
            ),
            Completion(
                content="42", finish_reason="stop", usage=Usage(input_tokens=150, output_tokens=5)
            ),
            Completion(
                content="hi", finish_reason="stop", usage=Usage(input_tokens=7, output_tokens=3)
            ),
        ],
        model="m-1",
    )
    engine = LLMEngine(bus, provider=provider, tools=[double])
    async with bus:
        await bus.execute(PipelineCommand(steps=4))  # 4 steps, one fails
        await bus.publish(
            MetricEvent(
                metrics=[
                    Metric(name="rows", value=4, unit="rows"),
                    Metric(name="rows", value=6, unit="rows"),
                ]
            )
        )
        await bus.publish(MetricEvent(metrics=[Metric(name="queue", value=1.5, tags={"q": "a"})]))
        await engine.chat("double 21")
        await engine.chat("hello", conversation_id="other")
    assert bus.log_path is not None
    return bus.log_path


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return asyncio.run(_record(tmp_path))
