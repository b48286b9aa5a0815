"""Record a session once, replay it anywhere: the replay provider and model strings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmgine import ConfigurationError, ProviderExhaustedError
from llmgine.bus import MessageBus
from llmgine.llm import (
    LLMEngine,
    OfflineProvider,
    OpenAIProvider,
    ReplayProvider,
    ScriptedProvider,
    default_model,
    provider_for,
)
from llmgine.testing import FakeOpenAIServer


def add(a: int, b: int) -> int:
    """Add.

    Args:
        a: First.
        b: Second.
    """
    return a + b


async def record(log_dir: Path) -> tuple[Path, list[str]]:
    with FakeOpenAIServer() as server:
        server.add_tool_calls(("add", {"a": 2, "b": 40}))
        server.add_text("The answer is 42.")
        server.add_text("You are welcome.")
        bus = MessageBus(
            log_dir=log_dir,
            log_filename="recorded.jsonl",
            enable_console_traces=False,
            enable_console_metrics=False,
        )
        engine = LLMEngine(
            bus,
            provider=OpenAIProvider("gpt-4o", base_url=server.base_url, max_retries=0),
            tools=[add],
        )
        async with bus:
            replies = [await engine.chat("What is 2 + 40?"), await engine.chat("Thanks!")]
    assert bus.log_path is not None
    return bus.log_path, replies


async def test_a_recorded_session_replays_with_no_server(tmp_path: Path) -> None:
    path, recorded = await record(tmp_path)
    bus = MessageBus(
        log_dir=tmp_path,
        log_filename="replayed.jsonl",
        enable_console_traces=False,
        enable_console_metrics=False,
    )
    engine = LLMEngine(bus, model=f"replay:{path}", tools=[add])
    async with bus:
        replayed = [await engine.chat("What is 2 + 40?"), await engine.chat("Thanks!")]
    assert replayed == recorded == ["The answer is 42.", "You are welcome."]
    assert engine.provider.model == "fake-gpt"
    lines = [json.loads(x) for x in (tmp_path / "replayed.jsonl").read_text().splitlines()]
    tool_results = [line["data"]["result"] for line in lines if line["type"] == "ToolResultEvent"]
    assert tool_results == [42]  # the tool really ran again, on the replayed call


async def test_replay_runs_out_with_a_clear_error(tmp_path: Path) -> None:
    path, _ = await record(tmp_path)
    provider = ReplayProvider(path)
    engine = LLMEngine(MessageBus(log_dir=None), provider=provider, tools=[add])
    for prompt in ("q", "thanks"):
        await engine.chat(prompt)
    with pytest.raises(Exception, match="all 3 responses recorded"):
        await engine.chat("one more")
    assert repr(provider).endswith("3/3 used)")


def test_replay_of_a_missing_or_empty_log_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no log file"):
        ReplayProvider(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"type": "MetricEvent"}\n')
    with pytest.raises(ConfigurationError, match="holds no LLMResponseEvent"):
        ReplayProvider(empty)
    with pytest.raises(ConfigurationError, match="needs a log file"):
        provider_for("replay:")


def test_model_strings(tmp_path: Path) -> None:
    assert isinstance(provider_for("offline"), OfflineProvider)
    assert isinstance(provider_for("scripted"), ScriptedProvider)
    with pytest.raises(ConfigurationError, match=r"Unknown model 'gpt5'.*openai:<model>"):
        provider_for("gpt5")


def test_default_model_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_model() == "offline"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-000000")
    assert default_model() == "openai:gpt-4o-mini"
    monkeypatch.setenv("LLMGINE_MODEL", "scripted")
    assert default_model() == "scripted"


async def test_scripted_provider_runs_out_with_a_clear_error() -> None:
    engine = LLMEngine(MessageBus(log_dir=None), provider=ScriptedProvider(["only"]))
    assert await engine.chat("a") == "only"
    with pytest.raises(Exception, match="no replies left"):
        await engine.chat("b")
    assert ProviderExhaustedError.__name__ == "ProviderExhaustedError"
