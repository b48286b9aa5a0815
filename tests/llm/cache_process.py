"""A second process on one cache file, for tests/llm/test_cache_file.py.

    python cache_process.py PATH WRITE_PREFIX READ_PREFIX COUNT SHARED

Prints ``ready``, waits for a line on stdin, answers COUNT prompts WRITE_PREFIX0.. and
SHARED prompts shared0.. through the cache (a counting model answers misses), prints
``written``, waits for another line, then asks READ_PREFIX0.. (the other process's
prompts) and prints a JSON report: its model calls and what it read.
"""

from __future__ import annotations

import asyncio
import json
import sys

from llmgine.llm.cache import LLMCache
from llmgine.llm.pipeline import Cached
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import ChatMessage, Completion, LLMRequest, Usage


class Counting(Provider):
    """Answers ``answer to <prompt>`` and counts its calls."""

    name = "counting"

    def __init__(self) -> None:
        super().__init__("count-1")
        self.calls = 0

    async def complete(self, request: LLMRequest) -> Completion:
        self.calls += 1
        prompt = request.messages[-1].content
        return Completion(content=f"answer to {prompt}", usage=Usage(input_tokens=1))


def request(prompt: str) -> LLMRequest:
    return LLMRequest(model="count-1", messages=[ChatMessage(role="user", content=prompt)])


async def main(path: str, write: str, read: str, count: int, shared: int) -> None:
    model = Counting()
    cache = LLMCache(path)
    step = Cached(model, cache)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    prompts = [f"{write}{i}" for i in range(count)] + [f"shared{i}" for i in range(shared)]
    for prompt in prompts:
        await step.complete(request(prompt))
    written = model.calls
    print("written", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    read_back = [(await step.complete(request(f"{read}{i}"))) for i in range(count)]
    await cache.aclose()
    report = {
        "written_calls": written,
        "read_calls": model.calls - written,
        "read": [c.content for c in read_back],
        "cached": [c.cached for c in read_back],
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    path, write, read, count, shared = sys.argv[1:6]
    asyncio.run(main(path, write, read, int(count), int(shared)))
