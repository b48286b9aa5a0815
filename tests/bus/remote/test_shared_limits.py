"""Rate limits shared over Redis: three worker processes send as much as one limit allows."""

from __future__ import annotations

import asyncio

import pytest
from conftest import StartWorker

from llmgine.bus import MessageBus
from llmgine.llm import PromptCommand
from llmgine.testing import RateLimitedServer

pytestmark = pytest.mark.timeout(180)


async def test_three_workers_share_one_rate_limit(
    caller: MessageBus, start_worker: StartWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 100 a minute is 5 every 3 s, with a burst of 2: in any 5 s at most about 10 go. The
    # server refuses the 13th: a margin of two for requests granted in time but delivered
    # close together on a loaded machine. Three workers with a limit each (not shared)
    # would send 5 a second.
    with RateLimitedServer(requests_per_minute=12, window=5.0) as server:
        monkeypatch.setenv("LIMITS_APP_BASE_URL", server.base_url)
        monkeypatch.setenv("LIMITS_APP_RPM", "100")
        for _ in range(3):
            start_worker("limits_app:setup")
        results = await asyncio.gather(
            *(caller.execute(PromptCommand(prompt=f"row {n}", conversation_id=str(n)), timeout=90)
              for n in range(24))
        )  # fmt: skip
        assert all(r.success for r in results), [r.error for r in results if not r.success]
        assert server.refused == 0
        assert server.early_retries == 0
        assert len(server.accepted_at) == 24
        workers = {r.metadata.get("worker") for r in results}
        spread = server.accepted_at[-1] - server.accepted_at[0]
    # 24 at 5 every 3 s after a burst of 2: about 13 s. Not shared, it would be about 4 s.
    assert spread >= 8.0, f"24 requests in {spread:.1f} s: the limit was not shared"
    assert workers  # the results came back (from whichever workers took them)


async def test_a_shared_token_limit_takes_the_answers_room_as_debt(caller: MessageBus) -> None:
    from llmgine.errors import RateLimitWaitError
    from llmgine.llm.limits import Limiter, RateLimits

    # 6,000 a minute: a burst of 100, less than the 512 kept for an answer. In Redis as
    # here: an idle limiter sends at once, the next call waits for the first's answer
    # room, and what the answer did not use comes back.
    limits = RateLimits(tokens_per_minute=6000)
    limiter, other = (Limiter(limits, "openai:m", caller) for _ in range(2))
    assert await limiter.wait_for_room(10, 3.0, answer=512) == 0.0
    with pytest.raises(RateLimitWaitError, match="tokens_per_minute=6000") as refused:
        await other.wait_for_room(10, 3.0, answer=512)  # the same bucket, in Redis
    assert (refused.value.retry_after or 0) > (10 + 512 + 10 - 100) / 100 - 0.5
    await limiter.correct(10 + 512, 10 + 20)
    assert await other.wait_for_room(10, 3.0, answer=512) == 0.0
