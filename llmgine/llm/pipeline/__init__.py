"""The LLM call as a pipeline of providers, built by the engine for each prompt.

A step is a :class:`~llmgine.llm.providers.wrapper.WrapperProvider`: a provider holding
the next one (``inner``). :func:`build_pipeline` is the one place the chain is put
together, in its documented order.
"""

from __future__ import annotations

from llmgine.bus.bus import MessageBus
from llmgine.llm.commands import PromptCommand
from llmgine.llm.pipeline.instrumentation import Instrumented
from llmgine.llm.pipeline.prompted_json import PromptedJSON, prompted
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider

__all__ = ["Instrumented", "PromptedJSON", "WrapperProvider", "build_pipeline", "prompted"]


def build_pipeline(provider: Provider, *, bus: MessageBus, command: PromptCommand) -> Provider:
    """Wrap ``provider`` (the real one) in the engine's steps; return the outermost.

    The order, outermost first (a step not configured is left out)::

        instrumentation  one LLM span, LLMResponseEvent and metrics per call
        budget           (to come) refuse a call once the budget is spent
        cache            (to come) answer a request seen before
        fallback         (to come) other models when this one fails
        retry            (to come) 429/5xx/timeouts with backoff
        rate limit       (to come) wait for room under the limits
        prompted JSON    structured output asked in the prompt when the server has no JSON mode
        the provider     the real one (OpenAI, local, offline, ...)

    Instrumentation is outermost, so a cached, retried or fallen-back call is still
    one span and one event, which the steps inside annotate. A new step is a
    ``WrapperProvider`` added here, in its place.

    Args:
        provider: The real provider that answers.
        bus: Where the telemetry goes.
        command: The prompt being answered (its conversation, its id, its settings).
    """
    chain: Provider = PromptedJSON(provider)
    return Instrumented(
        chain, bus=bus, conversation_id=command.conversation_id, prompt_id=command.id
    )
