"""Tutorial 11's stand-in for a real model: it reads a review's words, nothing more.

So that the notebook runs offline and prints the same on every run, ``ReviewModel``
answers like a model asked to classify shop reviews would (a sentiment and a topic, or a
one-line reply), from keywords, after a wait that grows with the prompt (a model's
latency). With a key, leave it out and pass ``--model openai:gpt-4o-mini`` instead.

``setup(bus)`` is what a worker runs: ``python -m llmgine worker review_model:setup``.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Literal

from pydantic import BaseModel

from llmgine import LLMEngine, MessageBus, Price
from llmgine.llm import Completion, LLMRequest, Provider, Usage
from llmgine.llm.providers.base import Capabilities, count_tokens

PRICES = {"reviews-mini": Price(input_per_mtok=0.15, output_per_mtok=0.60)}
"""Priced as a small hosted model, in US dollars per million tokens."""


class Review(BaseModel):
    """What a review is about, and how the customer feels about it."""

    sentiment: Literal["positive", "negative", "mixed"]
    topic: Literal["quality", "delivery", "price", "service"]


_GOOD = {"lovely", "best", "great", "perfect", "beautiful", "early", "excellent", "love",
         "fast", "fresh", "fragrant", "worth", "exact", "handy", "solid", "cheerful",
         "helpful", "easy", "delicate", "nice", "well"}  # fmt: skip
_BAD = {"cracked", "rain", "stopped", "never", "broke", "broken", "expensive",
        "uneven", "stale", "refund", "leaked", "pricey", "rude", "late", "open", "poor",
        "smaller"}  # fmt: skip
_TOPICS = {
    "delivery": {"arrived", "courier", "packed", "delivery", "package", "late"},
    "price": {"price", "expensive", "pricey", "value", "money", "worth"},
    "service": {"support", "emails", "staff", "refund", "phone", "replacement"},
}


def read_review(text: str) -> Review:
    """The sentiment and topic of ``text``, from its words."""
    words = re.findall(r"[a-z]+", text.lower())
    good, bad = sum(w in _GOOD for w in words), sum(w in _BAD for w in words)
    sentiment = "mixed" if good and bad else "negative" if bad else "positive"
    hits = {topic: sum(w in keys for w in words) for topic, keys in _TOPICS.items()}
    topic = max(hits, key=lambda t: hits[t]) if any(hits.values()) else "quality"
    return Review(sentiment=sentiment, topic=topic)  # type: ignore[arg-type]


class ReviewModel(Provider):
    """Answers review prompts from keywords; counts the requests it was sent."""

    name = "standin"

    def __init__(self, model: str = "reviews-mini", *, seconds_per_word: float = 0.004) -> None:
        super().__init__(model)
        self.seconds_per_word = seconds_per_word
        self.requests = 0
        """Requests received (a cancelled one counts too)."""
        self.answered = 0

    @property
    def capabilities(self) -> Capabilities:
        """Answers in the schema asked for by itself."""
        return Capabilities(json_schema=True)

    async def complete(self, request: LLMRequest) -> Completion:
        """A sentiment and topic as JSON when a schema is asked for, else a one-line reply."""
        self.requests += 1
        prompt = request.messages[-1].content or ""
        await asyncio.sleep(0.05 + self.seconds_per_word * count_tokens(prompt))
        review = read_review(prompt)
        if request.output_schema is not None:
            content = json.dumps(review.model_dump())
        elif review.sentiment == "positive":
            content = "Thank you, we are glad you like it!"
        else:
            content = f"Sorry about the {review.topic}; we will put it right."
        self.answered += 1
        usage = Usage(
            input_tokens=sum(count_tokens(m.content) for m in request.messages),
            output_tokens=count_tokens(content),
        )
        return Completion(content=content, usage=usage, model=self.model)


def setup(bus: MessageBus) -> None:
    """A worker's engine: the stand-in model, priced."""
    LLMEngine(bus, provider=ReviewModel(), prices=PRICES)
