"""The worker of the ``map`` tests: a model on the test's fake server that notes each answer.

``python -m llmgine worker map_app:setup``. The model is the fake OpenAI server at
``$MAP_APP_BASE_URL`` (slow enough that a batch lasts seconds), named after the worker's
pid (so the server and the result's ``model`` column say which worker asked). Every answer
the model gives is a line ``<pid>\\t<prompt>`` appended to ``$MAP_APP_RUNS/<pid>.txt`` as
soon as it arrives (a killed worker keeps the lines it wrote), before the engine's cache
stores it or the caller hears it: the tests count completions per row across workers.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, OpenAIProvider
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.types import Completion, LLMRequest


class Sentiment(BaseModel):
    """A structured answer: importable here, so it crosses Redis by its dotted name."""

    label: str
    score: float


class Noted(WrapperProvider):
    """Appends ``<pid>\\t<last user message>`` to this worker's file for each answer."""

    def __init__(self, inner: OpenAIProvider, path: Path) -> None:
        super().__init__(inner)
        self.path = path

    async def complete(self, request: LLMRequest) -> Completion:
        completion = await self.inner.complete(request)
        prompt = next(m.content for m in reversed(request.messages) if m.role == "user")
        line = f"{os.getpid()}\t{prompt}\n".encode()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(descriptor, line)  # one write: a kill never leaves half a line
        finally:
            os.close(descriptor)
        return completion


def setup(bus: MessageBus) -> None:
    provider = OpenAIProvider(
        f"worker-{os.getpid()}",
        api_key="sk-test",
        base_url=os.environ["MAP_APP_BASE_URL"],
        max_retries=0,
    )
    runs = Path(os.environ["MAP_APP_RUNS"], f"{os.getpid()}.txt")
    LLMEngine(bus, provider=Noted(provider, runs), retries=None)
