"""Every error llmgine raises on purpose.

All of them derive from :class:`LLMgineError`, so ``except LLMgineError`` catches
anything the library raises deliberately. Where an error resembles a builtin, it
subclasses that builtin too, so ``except ValueError`` or ``except LookupError``
keeps working::

    LLMgineError
    ├── HandlerAlreadyRegisteredError   (also ValueError)
    ├── HandlerNotFoundError            (also LookupError)
    ├── HandlerTimedOut                 (also TimeoutError) the bus's timeout ended a handler
    ├── BusStateError                   (also RuntimeError)
    │   └── ApprovalWithdrawnError      bus.stop() ended a call's wait for approval
    ├── ServerNotStartedError           (also RuntimeError) a local server used before start()
    ├── CommandFailedError              a convenience call's command failed
    ├── CircuitOpenError                (also RuntimeError) a CircuitBreaker fails fast
    ├── DeadLetterNotFoundError         (also LookupError) no dead letter has that id
    ├── ConfigurationError              (also ValueError)
    │   ├── LogSourceError              a log cannot be read as asked (also TypeError)
    │   ├── CacheError                  the call cache's file is another program's
    │   ├── TemplateError               a ``map`` template names no column of the frame
    │   └── MissingAPIKeyError
    ├── LogFormatError                  (also ValueError) a line is not an llmgine envelope
    ├── QueryError                      (also ValueError) SQL that cannot run over a log's views
    ├── MagicError                      (also ValueError) a mistake in a ``%llmgine`` line
    ├── ToolError                       (also ValueError)
    │   ├── ApprovalNotFoundError       no such tool call waits for approval (also LookupError)
    │   └── AmbiguousApprovalError      a call id matches several waiting calls
    ├── StructuredOutputError           (also ValueError)
    ├── ContextWindowError              (also ValueError) a turn larger than max_context_tokens
    ├── ConversationNotFoundError       (also LookupError) no such stored conversation
    ├── SharedBusConnectionError        (also ConnectionError) Redis unreachable or silent
    ├── RedisServerError                (also RuntimeError) a local redis-server did not start
    ├── BudgetExceededError             (also RuntimeError) a call would start past its budget
    ├── ApprovalTimeoutError            (also TimeoutError) a prompt's time ran out in approval
    └── ProviderError
        ├── ProviderAuthenticationError
        ├── ProviderRateLimitError
        │   └── RateLimitWaitError      the engine's RateLimits: room only past the prompt's timeout
        ├── ProviderConnectionError     (also ConnectionError)
        │   └── ProviderTimeoutError    (also TimeoutError)
        └── ProviderExhaustedError
"""

from __future__ import annotations

__all__ = [
    "AmbiguousApprovalError",
    "ApprovalNotFoundError",
    "ApprovalTimeoutError",
    "ApprovalWithdrawnError",
    "BudgetExceededError",
    "BusStateError",
    "CacheError",
    "CircuitOpenError",
    "CommandFailedError",
    "ConfigurationError",
    "ContextWindowError",
    "ConversationNotFoundError",
    "DeadLetterNotFoundError",
    "HandlerAlreadyRegisteredError",
    "HandlerNotFoundError",
    "HandlerTimedOut",
    "LLMgineError",
    "LogFormatError",
    "LogSourceError",
    "MagicError",
    "MissingAPIKeyError",
    "ProviderAuthenticationError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderExhaustedError",
    "ProviderRateLimitError",
    "ProviderTimeoutError",
    "QueryError",
    "RateLimitWaitError",
    "RedisServerError",
    "ServerNotStartedError",
    "SharedBusConnectionError",
    "StructuredOutputError",
    "TemplateError",
    "ToolError",
]


class LLMgineError(Exception):
    """Root of every error llmgine raises on purpose."""


class HandlerAlreadyRegisteredError(LLMgineError, ValueError):
    """A command type already has a different handler; a command has exactly one."""


class HandlerNotFoundError(LLMgineError, LookupError):
    """No handler is registered for the command that was executed."""


class HandlerTimedOut(LLMgineError, TimeoutError):
    """The bus's own timeout (``execute(timeout=)``) ended a command handler.

    Not a ``TimeoutError`` the handler raised itself. The bus turns it into a failed
    ``CommandResult`` whose ``error_type`` is ``"TimeoutError"``; only a bridge that
    runs a handler for another process (``BusPort.call_handler``) sees it raised.

    Args:
        timeout: The seconds the handler was given.
        message: What happened, when more than "it did not finish in time".
    """

    def __init__(self, timeout: float, message: str | None = None) -> None:
        super().__init__(message or f"the handler did not finish within {timeout:g} s")
        self.timeout = timeout


class BusStateError(LLMgineError, RuntimeError):
    """The bus was asked for something its current state does not allow."""


class ServerNotStartedError(LLMgineError, RuntimeError):
    """A local server (``LlamaServer``, ``FakeOpenAIServer``) was used before it started."""


class CommandFailedError(LLMgineError):
    """A convenience call (such as ``engine.chat``) ran a command that failed.

    The failed :class:`~llmgine.messages.CommandResult` is in ``result``.
    """

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class ConfigurationError(LLMgineError, ValueError):
    """A setting is wrong: an unknown model string, a missing file, a bad option."""


class LogSourceError(ConfigurationError, TypeError):
    """A log cannot be read as asked: no such file, not a log, a filter that is not a time."""


class CacheError(ConfigurationError):
    """The call cache cannot do what was asked.

    Its file is another program's database or a newer llmgine's (llmgine leaves it alone),
    or a blocking call (``stats()``, ``clear()``) was made on the shared Redis cache.
    """


class TemplateError(ConfigurationError):
    """A ``map`` template cannot be filled from the frame's rows: nothing was sent.

    The message names what is wrong (a column that is not there, with the columns
    that are; a positional ``{}``; a stray brace) and how to write it instead.
    """


class MissingAPIKeyError(ConfigurationError):
    """A provider that needs an API key has none."""


class LogFormatError(LLMgineError, ValueError):
    """A log line is not JSON, not an llmgine envelope, or does not fit its message class."""


class QueryError(LLMgineError, ValueError):
    """The SQL given to :func:`~llmgine.analysis.query` cannot run over the log's views.

    It does not parse, names a column or table that is not there, or fails on the
    data (a cast that does not convert, an overflow, an invalid argument).
    """


class MagicError(LLMgineError, ValueError):
    """A mistake in a ``%llmgine`` line: shown as one readable line, and the cell fails."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever it quotes

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: ``llmgine: <the message>``."""
        return [f"llmgine: {self}"]


class CircuitOpenError(LLMgineError, RuntimeError):
    """A ``CircuitBreaker`` is open: the command failed fast, its handler was not called."""


class DeadLetterNotFoundError(LLMgineError, LookupError):
    """``bus.redrive(id)`` names no dead letter kept here or in the shared bus."""


class ToolError(LLMgineError, ValueError):
    """A tool call cannot run as asked; its message goes back to the model."""


class ProviderError(LLMgineError):
    """A provider call failed; the message says why and what to do.

    Args:
        message: What happened and what to do.
        status: The server's HTTP status, when it answered with one.
        retry_after: Seconds the server asked to wait before trying again
            (``Retry-After``/``retry-after-ms``), if it said.
    """

    def __init__(
        self, message: str = "", *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ProviderAuthenticationError(ProviderError):
    """The provider rejected the credentials (HTTP 401/403)."""


class ProviderRateLimitError(ProviderError):
    """The provider is rate limiting or out of quota (HTTP 429)."""


class RateLimitWaitError(ProviderRateLimitError):
    """The engine's own ``RateLimits`` would hold a call past its prompt's timeout.

    Nothing was sent and nothing is retried; a fallback model, if any, answers instead.
    """


class ProviderConnectionError(ProviderError, ConnectionError):
    """The provider could not be reached, or did not answer in time."""


class ProviderTimeoutError(ProviderConnectionError, TimeoutError):
    """The provider, or the whole prompt, took longer than its timeout."""


class StructuredOutputError(LLMgineError, ValueError):
    """The model's answers did not match the requested ``output_type``, after the retries."""


class ProviderExhaustedError(ProviderError):
    """A scripted or replay provider has no replies left."""


class ApprovalNotFoundError(ToolError, LookupError):
    """No tool call waits for approval under the key an ``ApproveToolCallCommand`` gave."""


class AmbiguousApprovalError(ToolError):
    """A ``call_id`` matches several waiting tool calls: name one by its ``approval_id``."""


class SharedBusConnectionError(LLMgineError, ConnectionError):
    """The shared bus's Redis cannot be reached, or did not answer in time (``bus.connect``)."""


class RedisServerError(LLMgineError, RuntimeError):
    """A local ``redis-server`` (:class:`~llmgine.bus.remote.RedisServer`) did not come up."""


class BudgetExceededError(LLMgineError, RuntimeError):
    """A call would start after its budget (``LLMEngine(budget=Budget(...))``) is spent.

    Nothing was sent. The message names the budget and what was spent; so do the
    attributes.
    """

    def __init__(
        self,
        message: str,
        *,
        budget: object = None,
        scope: str = "engine",
        spent_usd: float = 0.0,
        spent_tokens: int = 0,
    ) -> None:
        super().__init__(message)
        self.budget = budget
        """The :class:`~llmgine.llm.budget.Budget` that is spent."""
        self.scope = scope
        """What it counts: ``"engine"``, ``"conversation <id>"`` or ``"command <id>"``."""
        self.spent_usd = spent_usd
        self.spent_tokens = spent_tokens


class ContextWindowError(LLMgineError, ValueError):
    """A prompt's own turn does not fit in ``max_context_tokens``; nothing was sent."""


class ConversationNotFoundError(LLMgineError, LookupError):
    """No stored conversation has the id asked for."""


class ApprovalTimeoutError(LLMgineError, TimeoutError):
    """A prompt's timeout ran out while one of its tool calls waited for a person's approval.

    The provider did nothing wrong: the call did not run and the conversation is unchanged.
    Decide sooner, set ``engine.approvals.timeout`` below the prompt's timeout (an unanswered
    call then goes back to the model as denied), or give the prompt more ``timeout``.
    """


class ApprovalWithdrawnError(BusStateError):
    """``bus.stop()`` ended the wait of a tool call for approval: the call did not run.

    Its prompt fails with this error at once (no further model call); send it again once
    the bus runs again.
    """
