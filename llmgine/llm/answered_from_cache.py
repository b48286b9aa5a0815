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

from collections.abc import Sequence
from typing import TYPE_CHECKING

from llmgine.llm.pipeline import Cached
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider
from llmgine.llm.types import Completion

if TYPE_CHECKING:
    from llmgine.llm.cache import LLMCache
    from llmgine.llm.commands import PromptCommand
    from llmgine.llm.engine import LLMEngine
    from llmgine.llm.run import PromptRun
    from llmgine.messages.commands import CommandResult

__all__ = ["answered_from_cache"]


def _cache_step(chain: Provider) -> Cached | None:
    """The pipeline's cache step, if it has one that looks answers up."""
    step: Provider = chain
    while isinstance(step, WrapperProvider):
        if isinstance(step, Cached):
            return None if step.bypass else step
        step = step.inner
    return None


def _final(hit: Completion) -> bool:
    """Whether a cached answer ends its prompt's run (one asking for tools does not)."""
    return not hit.tool_calls


async def answered_from_cache(
    engine: LLMEngine, commands: Sequence[PromptCommand]
) -> list[CommandResult | None]:
    """Each prompt's result if the call cache answers it whole, else ``None``; nothing sent.

    Only for prompts that start a conversation of their own and keep nothing
    (``remember=False``, a new ``conversation_id``), as ``map``'s rows are: a prompt that
    keeps its turn, streams, or has a context window is ``None`` (sent as usual). The
    stores are read once per cache for all ``commands``.

    Args:
        engine: The engine that would run the prompts (its settings make the requests).
        commands: The prompts.
    """
    results: list[CommandResult | None] = [None] * len(commands)
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
        chain = chains.get(settings)
        conversation = engine.conversations.new(command.conversation_id)
        try:
            run = engine.prompt_run(command, conversation, chain=chain)
        except Exception:  # a setting the run refuses: the prompt, sent, fails saying so
            continue
        chains[settings] = run.chain
        step = _cache_step(run.chain)
        request = run.first_request()
        if step is None or request is None:
            continue
        entry = lookups.setdefault(id(step.cache), (step.cache, []))
        entry[1].append((position, step.key(request), run))
    keeper = engine.policies.budget
    for cache, entries in lookups.values():
        hits = await cache.lookup_many([key for _, key, _ in entries], usable=_final)
        for (position, _, run), hit in zip(entries, hits, strict=True):
            result = None if hit is None else run.answered_by(hit)
            if hit is None or result is None:
                continue
            if keeper is not None:
                await keeper.add(run.command, hit.model or run.chain.model, hit)
            results[position] = result
    return results
