"""Prompts the call cache answers whole, found before they are sent: a batch's finished rows.

``map`` looks its rows up here in chunks before sending any: a row whose first call the
cache answers with a final answer (no tool calls; one that validates against the prompt's
``output_type``) is done without a command, a span or a request, which is what makes a
re-run of a finished batch cheap. Each such row is counted in the engine's ``spend`` (a
cached call) and in the cache's ``hits``. The rows it cannot answer are sent as usual,
and their calls skip the cache read this lookup already made (see
:class:`~llmgine.llm.cache.known_misses.KnownMisses`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from llmgine.llm.pipeline import Cached
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.types import Completion
from llmgine.messages.commands import CommandResult

if TYPE_CHECKING:
    from llmgine.llm.cache import LLMCache
    from llmgine.llm.commands import PromptCommand
    from llmgine.llm.engine import LLMEngine
    from llmgine.llm.run import PromptRun

__all__ = ["Answered", "answered_from_cache"]

logger = logging.getLogger(__name__)


class Answered(NamedTuple):
    """A prompt the cache answered: its result, and the kept answer it came from."""

    result: CommandResult
    """What the prompt's run would have returned."""
    answer: Completion
    """The cached answer (``cost_saved_usd``: what it saved)."""


def _cache_step(chain: Provider) -> Cached | None:
    """The pipeline's cache step, if it has one that looks answers up."""
    step: Provider = chain
    while isinstance(step, WrapperProvider):
        if isinstance(step, Cached):
            return None if step.bypass else step
        step = step.inner
    return None


async def answered_from_cache(
    engine: LLMEngine, commands: Sequence[PromptCommand], *, remember_misses: bool = True
) -> list[Answered | None]:
    """Each prompt's result (and the cached answer) if the cache answers it whole; nothing sent.

    Only for prompts that start a conversation of their own and keep nothing
    (``remember=False``, a new ``conversation_id``), as ``map``'s rows are: a prompt that
    keeps its turn, streams, or has a context window is ``None`` (sent as usual), and so
    is one whose cached answer its run does not accept or cannot read (it then fails, or
    not, as it would sent). The stores are read once per cache for all ``commands``.

    Args:
        engine: The engine that would run the prompts (its settings make the requests).
        commands: The prompts.
        remember_misses: Remember the keys not found as missing for a while, so the
            prompts' calls, sent next, skip their read (``False``: none is sent next).

    Raises:
        ConfigurationError: A cache that cannot be used as set up (``cache="redis"`` on a
            bus not connected, another program's file).
    """
    results: list[Answered | None] = [None] * len(commands)
    lookups: dict[int, tuple[LLMCache, list[tuple[int, str, PromptRun]]]] = {}
    chains: dict[tuple[object, ...], Provider] = {}
    for position, command in enumerate(commands):
        if command.remember or command.stream:
            continue
        if (command.max_context_tokens or engine.max_context_tokens) is not None:
            continue
        # The pipeline only names the request here (it is never called): one for every
        # prompt with the settings it depends on.
        settings = (command.model, command.cache, command.cache_salt)
        try:
            conversation = engine.conversations.new(command.conversation_id)
            run = engine.prompt_run(command, conversation, chain=chains.get(settings))
            chains[settings] = run.chain
            step = _cache_step(run.chain)
            request = run.first_request()
            if step is None or request is None:
                continue
            key = step.key(request)
        except Exception:  # a setting the run refuses: the prompt, sent, fails saying so
            logger.debug("Prompt %s is not looked up ahead", command.id, exc_info=True)
            continue
        entry = lookups.setdefault(id(step.cache), (step.cache, []))
        entry[1].append((position, key, run))
    keeper = engine.policies.budget
    for cache, entries in lookups.values():
        keys = [key for _, key, _ in entries]
        hits = await cache.lookup_many(keys, remember_misses=remember_misses)
        for (position, _, run), hit in zip(entries, hits, strict=True):
            if hit is None:
                continue
            try:
                result = run.answered_by(hit)  # None: the run goes on from it (tools, invalid)
            except Exception:  # the output type's own validator raised: as the run would
                logger.debug("A cached answer is left to its prompt's run", exc_info=True)
                continue
            if result is None:
                continue
            cache.count_hits()
            if keeper is not None:
                await keeper.add(run.command, hit.model or run.chain.model, hit)
            results[position] = Answered(result, hit)
    return results
