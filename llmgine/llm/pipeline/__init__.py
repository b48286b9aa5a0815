"""The LLM call as a pipeline of providers, built by the engine for each prompt.

A step is a :class:`~llmgine.llm.providers.wrapper.WrapperProvider`: a provider holding
the next one (``inner``). :func:`build_pipeline` is the one place the chain is put
together, in its documented order.
"""

from __future__ import annotations

from llmgine.bus.bus import MessageBus
from llmgine.llm.commands import PromptCommand
from llmgine.llm.pipeline.budgeted import Budgeted, BudgetGate
from llmgine.llm.pipeline.cached import Cached
from llmgine.llm.pipeline.fallback import Fallback
from llmgine.llm.pipeline.instrumentation import Instrumented
from llmgine.llm.pipeline.limited import RateLimited
from llmgine.llm.pipeline.policies import CallPolicies
from llmgine.llm.pipeline.priced import Priced
from llmgine.llm.pipeline.prompted_json import PromptedJSON, prompted
from llmgine.llm.pipeline.resilience import Resilience
from llmgine.llm.pipeline.retrying import Retrying
from llmgine.llm.providers.base import Provider
from llmgine.llm.providers.wrapper import WrapperProvider

__all__ = [
    "Budgeted",
    "Cached",
    "CallPolicies",
    "Fallback",
    "Instrumented",
    "Priced",
    "PromptedJSON",
    "RateLimited",
    "Resilience",
    "Retrying",
    "WrapperProvider",
    "build_pipeline",
    "prompted",
]


def build_pipeline(
    provider: Provider,
    *,
    bus: MessageBus,
    command: PromptCommand,
    policies: CallPolicies | None = None,
    resilience: Resilience | None = None,
) -> Provider:
    """Wrap ``provider`` (the real one) in the engine's steps; return the outermost.

    The order, outermost first (a step not configured is left out)::

        instrumentation  one LLM span, LLMResponseEvent and metrics per call
        budget           refuse a call once the budget is spent; count the spend
        cache            answer a request seen before (unless the prompt says cache=False)
        fallback         other models when this one fails (each with the steps below)
        retry            429/5xx/timeouts/connection errors of a server, backoff, Retry-After
        rate limit       wait for room under the model's limits
        pricing          the answer's cost in USD (per model, so below a fallback)
        prompted JSON    structured output asked in the prompt when the server has no JSON mode
        the provider     the real one (OpenAI, local, offline, ...)

    Instrumentation is outermost, so a cached, retried or fallen-back call is still
    one span and one event, which the steps inside annotate. A new step is a
    ``WrapperProvider`` added here, in its place.

    Args:
        provider: The real provider that answers.
        bus: Where the telemetry goes.
        command: The prompt being answered (its conversation, its id, its settings).
        policies: The engine's prices, cache and budget (none: the provider as it is).
        resilience: The engine's retries, rate limits and fallback models.
    """

    def model_chain(provider: Provider) -> Provider:
        """One model's steps, from the rate limit down to the provider."""
        chain: Provider = PromptedJSON(provider)
        if policies is not None:
            keeper = policies.budget  # a dollar budget refuses a model of unknown price
            chain = Priced(chain, policies.prices, None if keeper is None else keeper.budget)
        if resilience is None:
            return chain
        limiter = resilience.limiter(provider)
        if limiter is not None:
            chain = RateLimited(chain, limiter)
        if resilience.retries is not None and provider.endpoint is not None:
            # Only a server's failures are worth another try; an in-process model's
            # (offline, scripted, replay, local) are not, and a scripted one is meant.
            chain = Retrying(
                chain,
                resilience.retries,
                publish=bus.publish,
                conversation_id=command.conversation_id,
                prompt_id=command.id,
                fallback=bool(resilience.fallback),
            )
        return chain

    chain = model_chain(provider)
    if resilience is not None and resilience.fallback:
        others = [p for p in resilience.fallback if p.model_string != provider.model_string]
        if others:
            chain = Fallback(chain, [model_chain(p) for p in others])
    if policies is not None:
        cache = policies.cache_for(command)
        if cache is not None and policies.budget is not None:
            chain = BudgetGate(chain, policies.budget, command)  # a hit sends nothing: allowed
        if cache is not None:
            chain = Cached(chain, cache, salt=command.cache_salt)
        if policies.budget is not None:
            chain = Budgeted(chain, policies.budget, command, check=cache is None)
    return Instrumented(
        chain, bus=bus, conversation_id=command.conversation_id, prompt_id=command.id
    )
