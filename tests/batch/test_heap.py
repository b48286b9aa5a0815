"""``map`` leaves the heap made before it out of the collector's passes while it runs."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pandas as pd
import pytest

from llmgine.batch.heap import frozen_heap
from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import Completion, LLMRequest


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_the_heap_is_frozen_until_the_last_batch_running_ends() -> None:
    made_before = [object() for _ in range(10)]
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        with frozen_heap():  # a second map meanwhile
            pass
        assert gc.get_freeze_count() > 0  # the first still runs
    assert gc.get_freeze_count() == 0
    assert made_before


def test_a_heap_the_program_froze_itself_stays_frozen() -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    with frozen_heap():
        pass
    assert gc.get_freeze_count() == frozen


def test_with_the_collector_off_nothing_is_frozen() -> None:
    gc.disable()
    try:
        with frozen_heap():
            assert gc.get_freeze_count() == 0
    finally:
        gc.enable()


class Watching(Provider):
    """Notes whether the heap was frozen while it answered."""

    name = "watching"

    def __init__(self) -> None:
        super().__init__("watching-1")
        self.frozen: list[bool] = []

    async def complete(self, request: LLMRequest) -> Completion:
        self.frozen.append(gc.get_freeze_count() > 0)
        return Completion(content="ok")


async def test_map_runs_its_rows_with_the_heap_frozen_and_gives_it_back(bus: MessageBus) -> None:
    model = Watching()
    engine = LLMEngine(bus, provider=model, cache=False)
    frame = pd.DataFrame({"review": ["a", "b", "c"]})
    result = await engine.map(frame, "{review}", progress=False, cache=False)
    assert result["error"].isna().all()
    assert model.frozen == [True, True, True]
    assert gc.get_freeze_count() == 0


class Freezing(Provider):
    """Freezes the heap itself on its first call, as a program about to fork workers would."""

    name = "freezing"

    def __init__(self) -> None:
        super().__init__("freezing-1")

    async def complete(self, request: LLMRequest) -> Completion:
        if not hasattr(self, "froze"):
            self.froze = True
            gc.freeze()
        return Completion(content="ok")


async def test_a_heap_the_program_froze_during_a_map_stays_frozen(bus: MessageBus) -> None:
    engine = LLMEngine(bus, provider=Freezing(), cache=False)
    frame = pd.DataFrame({"review": ["a", "b"]})
    await engine.map(frame, "{review}", progress=False, cache=False, concurrency=1)
    assert gc.get_freeze_count() > 0
