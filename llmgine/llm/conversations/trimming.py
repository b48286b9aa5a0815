"""Keeping a request inside the model's window: the oldest turns are left out of it.

The system prompt stays; turns go whole (a tool call never without its results);
the prompt's own turn is never cut, and a turn that alone does not fit is a
:class:`~llmgine.errors.ContextWindowError` before anything is sent. Each trim is a
``ConversationTrimmedEvent``. Only the request is trimmed: the store keeps every message.
Tokens are counted with the model's tokenizer when llmgine has it (the local model's),
otherwise estimated high (:func:`estimate_tokens`), so a trimmed request fits the server.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from llmgine.errors import ContextWindowError
from llmgine.llm.events import ConversationTrimmedEvent
from llmgine.llm.providers.base import Provider, count_tokens
from llmgine.llm.types import ChatMessage

if TYPE_CHECKING:
    from llmgine.bus.bus import MessageBus
    from llmgine.llm.commands import PromptCommand

__all__ = ["ContextWindow", "estimate_tokens", "token_counter"]

logger = logging.getLogger(__name__)

TokenCounter = Callable[[str], int]

MESSAGE_OVERHEAD = 4
"""Tokens a chat template adds around each message (role markers)."""

_ALNUM = re.compile(r"[A-Za-z0-9]+")
_WORD = re.compile(r"[A-Za-z][a-z]*")  # a lowercase or Capitalized word
_MARKS = re.compile(r"[!-/:-@\[-`{-~]")  # ASCII punctuation and symbols
_BLANKS = re.compile(r"[^\S ]| (?= )")  # a tab, line break, ... and each space before another


def _run_tokens(run: str) -> int:
    """The most tokens a run of ASCII letters and digits takes."""
    if len(run) <= 12 and _WORD.fullmatch(run):
        return max(1, (len(run) - 2) // 2)  # short words are one token, longer ones split
    return len(run)  # digits, hashes, base64, mixedCase, ACRONYMS: up to a token each


def estimate_tokens(text: str) -> int:
    """A text's tokens, estimated high, for a window check without the model's tokenizer.

    Tokenizers differ, and a window that is under-counted is a request the server
    refuses, so each kind of character is counted at the most tokens a small byte-level
    vocabulary (SmolLM2's, the llama.cpp tests' model) spends on it:

    - a lowercase or Capitalized word of ASCII letters, up to 12 long: one token a pair
      of letters past the first two, at least one;
    - any other run of ASCII letters and digits (numbers, hashes, base64, mixedCase,
      capitals, long words): one token a character;
    - each ASCII mark, and each tab, line break or space before another: one token;
    - each other character: its UTF-8 bytes (a byte-level vocabulary spends up to a
      token a byte: CJK and Hangul 3, emoji 4, accented and Cyrillic letters 2);
    - one more for the text (where a tokenizer's first piece differs).

    It is never below :func:`~llmgine.llm.providers.base.count_tokens` (words and
    marks, the usage estimate). English prose comes out about a fifth above the real
    count, text without spaces up to a few times above: trimming leaves room rather
    than sending a request the server refuses.
    """
    if not text:
        return 0
    ascii_only = text.isascii()
    runs = sum(_run_tokens(run) for run in _ALNUM.findall(text))
    marks = len(_MARKS.findall(text)) + len(_BLANKS.findall(text))
    other = (
        0
        if ascii_only
        else sum(len(c.encode("utf-8", "surrogatepass")) for c in text if not c.isascii())
    )
    return max(1 + runs + marks + other, count_tokens(text))


async def token_counter(provider: Provider) -> TokenCounter | None:
    """The tokenizer of ``provider``'s model as a counter, if llmgine can reach it.

    The local model (``model="local"``) has one; for other providers ``None`` (the
    window is then checked with :func:`estimate_tokens`, which counts high).
    """
    while (inner := getattr(provider, "inner", None)) is not None:
        provider = inner
    from llmgine.llm.providers.local import LocalProvider

    if not isinstance(provider, LocalProvider):
        return None
    loaded = await provider._load()  # the model, loaded once per process, off the loop
    llama = loaded.llama

    def count(text: str) -> int:
        return len(llama.tokenize(text.encode(), add_bos=False, special=True))

    return count


class ContextWindow:
    """Fits one prompt's requests into ``limit`` tokens.

    Args:
        limit: The window, in tokens.
        counter: Counts a text's tokens (the model's tokenizer); ``None`` estimates high
            (:func:`estimate_tokens`).
        bus: Where ``ConversationTrimmedEvent`` goes.
        command: The prompt (its conversation and id; its ``max_tokens`` is kept free
            for the answer).
    """

    def __init__(
        self,
        limit: int,
        counter: TokenCounter | None,
        bus: MessageBus,
        command: PromptCommand,
    ) -> None:
        self.limit = limit
        self.count = counter or estimate_tokens
        self.exact = counter is not None
        self.bus = bus
        self.command = command
        self.room = limit - (command.max_tokens or 0)
        self._sizes: dict[int, int] = {}  # by id(message): the history does not change in a run

    def tokens(self, message: ChatMessage) -> int:
        """One message's tokens: its text, its tool calls, the template's markers."""
        size = self._sizes.get(id(message))
        if size is None:
            size = MESSAGE_OVERHEAD + self.count(message.content or "")
            for call in message.tool_calls:
                size += self.count(call.name) + self.count(call.arguments) + 1
            self._sizes[id(message)] = size
        return size

    async def fit(
        self,
        system: Sequence[ChatMessage],
        history: Sequence[ChatMessage],
        turns: Sequence[int],
        current: Sequence[ChatMessage],
        extras: Sequence[object] = (),
    ) -> list[ChatMessage]:
        """The request's messages: the system prompt, the newest turns that fit, this turn.

        ``system`` and ``current`` (this prompt's turn so far) are always sent; of
        ``history`` (with ``turns``, each message's turn number), the newest whole turns
        that fit with them. ``extras`` (the tools' definitions, the output schema) are
        sent too: their JSON counts against the window.

        Raises:
            ContextWindowError: ``system`` and ``current`` alone do not fit.
        """
        fixed = sum(self.tokens(m) for m in (*system, *current)) + sum(
            self.count(json.dumps(extra, default=str)) for extra in extras if extra
        )
        if fixed > self.room:
            reserved = self.limit - self.room
            raise ContextWindowError(
                f"This prompt's turn needs {fixed} tokens"
                + ("" if self.exact else " (estimated high, without the model's tokenizer)")
                + " for the system prompt, tool definitions and the turn so far, "
                f"more than max_context_tokens={self.limit}"
                + (f" less max_tokens={reserved} kept for the answer" if reserved else "")
                + ": nothing was sent and the conversation is unchanged. Shorten the prompt "
                "(or the tools' results), or raise max_context_tokens on the prompt or the "
                "LLMEngine (up to the model's window)"
                + (", or lower max_tokens." if reserved else ".")
            )
        start, used = len(history), fixed
        while start > 0:
            first = start - 1
            while first > 0 and turns[first - 1] == turns[start - 1]:
                first -= 1
            size = sum(self.tokens(m) for m in history[first:start])
            if used + size > self.room:
                break
            start, used = first, used + size
        if start:
            await self.bus.publish(
                ConversationTrimmedEvent(
                    conversation_id=self.command.conversation_id,
                    prompt_id=self.command.id,
                    dropped_messages=start,
                    dropped_tokens=sum(self.tokens(m) for m in history[:start]),
                    kept_messages=len(system) + len(history) - start + len(current),
                    context_tokens=used,
                    max_context_tokens=self.limit,
                )
            )
        return [*system, *history[start:], *current]
