"""``FakeOpenAIServer(delay=...)``: a server with latency, or slow for some prompts only."""

from __future__ import annotations

import threading
from typing import Any

import openai
import pytest

from llmgine.testing import FakeOpenAIServer

waiting: list[threading.Thread] = []


def slow_for_slow_prompts(body: dict[str, Any]) -> float:
    if "slow" not in str(body["messages"][-1]["content"]):
        return 0.0
    waiting.append(threading.current_thread())  # the server's thread answering it
    return 60.0


@pytest.mark.timeout(60)
async def test_a_delay_of_some_prompts_keeps_their_answer_back_and_stop_ends_the_wait() -> None:
    with FakeOpenAIServer(delay=slow_for_slow_prompts) as server:
        client = openai.AsyncOpenAI(api_key="k", base_url=server.base_url, max_retries=0)
        try:
            fast = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "quick"}]
            )
            assert fast.choices[0].message.content == "Echo: quick"
            with pytest.raises(openai.APITimeoutError):
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "slow one"}], timeout=0.5
                )
        finally:
            await client.close()
        assert len(server.requests) == 2  # the slow one arrived; its answer never left
    (thread,) = waiting
    thread.join(timeout=30)
    assert not thread.is_alive()  # stop() ended its 60 s wait


@pytest.mark.timeout(60)
async def test_a_fixed_delay_holds_every_answer_and_the_requests_are_counted_on_arrival() -> None:
    with FakeOpenAIServer(delay=60.0) as server:
        client = openai.AsyncOpenAI(api_key="k", base_url=server.base_url, max_retries=0)
        try:
            with pytest.raises(openai.APITimeoutError):
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}], timeout=0.5
                )
        finally:
            await client.close()
        assert [b["messages"][-1]["content"] for b in server.requests] == ["hi"]
