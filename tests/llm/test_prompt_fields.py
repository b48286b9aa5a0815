"""PromptCommand fields a batch and an experiment rely on: a system prompt per prompt,
``cache=True`` without an engine cache, a cache salt, and an output type by name."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from counting_model import Counting, request
from pydantic import BaseModel, ValidationError

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, PromptCommand
from llmgine.llm.cache import request_key
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import Completion, LLMRequest

pytestmark = pytest.mark.timeout(60)


class Label(BaseModel):
    """An output type importable by name (``tests/llm/test_prompt_fields.Label``)."""

    label: str


class Recording(Provider):
    """Answers ``ok`` and keeps every request it was sent."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__("rec-1")
        self.requests: list[LLMRequest] = []

    async def complete(self, request: LLMRequest) -> Completion:
        self.requests.append(request)
        return Completion(content="ok")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("LLMGINE_CACHE_DIR", str(folder))
    return folder


async def test_a_prompts_system_prompt_is_sent_and_kept_with_its_turn(bus: MessageBus) -> None:
    provider = Recording()
    engine = LLMEngine(bus, provider=provider, system_prompt="engine's")
    await engine.chat("one", conversation_id="c", system_prompt="Answer in French.")
    await engine.chat("two", conversation_id="c")
    await engine.chat("three", conversation_id="other")
    sent = [[m.content for m in r.messages if m.role == "system"] for r in provider.requests]
    assert sent == [["Answer in French."], ["Answer in French."], ["engine's"]]
    assert engine.conversations.get("c").system_prompt == "Answer in French."


async def test_a_failed_prompt_does_not_keep_its_system_prompt(bus: MessageBus) -> None:
    class Failing(Recording):
        async def complete(self, request: LLMRequest) -> Completion:
            raise RuntimeError("down")

    engine = LLMEngine(bus, provider=Failing(), system_prompt="engine's")
    result = await bus.execute(PromptCommand(prompt="x", conversation_id="c", system_prompt="new"))
    assert not result.success
    assert engine.conversations.get("c").system_prompt == "engine's"


async def test_cache_true_uses_the_default_file_when_the_engine_has_no_cache(
    bus: MessageBus, cache_dir: Path
) -> None:
    model = Counting()
    LLMEngine(bus, provider=model)  # no cache of its own
    for cache in (None, None, True, True):
        conversation = uuid.uuid4().hex
        result = await bus.execute(
            PromptCommand(prompt="hi", conversation_id=conversation, cache=cache)
        )
        assert result.success, result.error
    assert model.calls == 3  # two uncached, then one call kept and one hit
    assert (cache_dir / "calls.sqlite3").exists()


async def test_cache_false_still_asks_when_the_engine_has_a_cache(bus: MessageBus) -> None:
    model = Counting()
    LLMEngine(bus, provider=model, cache=True)
    for cache in (None, None, False):
        await bus.execute(PromptCommand(prompt="hi", conversation_id=uuid.uuid4().hex, cache=cache))
    assert model.calls == 2


async def test_a_cache_salt_keeps_answers_apart(bus: MessageBus) -> None:
    model = Counting()
    LLMEngine(bus, provider=model, cache=True)
    for salt in (None, "1", "2", "1", None):
        await bus.execute(
            PromptCommand(prompt="hi", conversation_id=uuid.uuid4().hex, cache_salt=salt)
        )
    assert model.calls == 3


def test_a_salt_changes_the_key_and_no_salt_keeps_the_old_key() -> None:
    plain = request_key(request("hi"), provider="p", endpoint=None)
    assert request_key(request("hi"), provider="p", endpoint=None, salt=None) == plain
    salted = request_key(request("hi"), provider="p", endpoint=None, salt="1")
    assert salted != plain
    assert salted != request_key(request("hi"), provider="p", endpoint=None, salt="2")


def test_an_output_type_travels_by_name() -> None:
    command = PromptCommand(prompt="x", output_type=Label)
    again = PromptCommand.model_validate_json(command.model_dump_json())
    assert again.output_type is Label


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("__main__.NotThere", "cannot be imported here"),
        ("no_such_module_xyz.Label", "cannot be imported here"),
        ("uuid.UUID", "is not a pydantic model"),
    ],
)
def test_an_output_type_name_that_names_no_model_is_a_clear_error(name: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        PromptCommand.model_validate({"prompt": "x", "output_type": name})


async def test_a_prompt_that_does_not_remember_leaves_its_conversation_as_it_was(
    bus: MessageBus,
) -> None:
    provider = Recording()
    engine = LLMEngine(bus, provider=provider)
    await engine.chat("one", conversation_id="c")
    result = await bus.execute(PromptCommand(prompt="two", conversation_id="c", remember=False))
    assert result.result == "ok"
    await engine.chat("three", conversation_id="c")
    sent = [m.content for m in provider.requests[-1].messages]
    assert sent == ["one", "ok", "three"]  # "two" and its answer were never kept
    await bus.execute(PromptCommand(prompt="x", conversation_id="once", remember=False))
    assert "once" not in set(engine.conversations.list()["id"])
