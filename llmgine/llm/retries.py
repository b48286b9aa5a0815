"""The retry policy of provider calls: which failures are retried, and how long to wait."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from llmgine.errors import (
    ConfigurationError,
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimitError,
    RateLimitWaitError,
)

__all__ = ["RETRIED_STATUSES", "Retries", "is_retryable", "retry_after"]

RETRIED_STATUSES = frozenset({408, 409, 429})
"""HTTP statuses below 500 that are worth another try; every 5xx is too."""


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a server asked to wait: ``retry-after-ms``, else ``Retry-After``.

    ``Retry-After`` is seconds or an HTTP date; a value that is neither (or in the
    past) asks for no wait. ``headers`` must look names up case-insensitively, as
    an HTTP library's do.
    """
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def is_retryable(error: BaseException) -> bool:
    """Whether another try of the same request may succeed.

    Rate limits (429), server errors (5xx), 408/409, timeouts and connection errors
    are; a refused key, a bad request or anything that is not a provider's error
    is not.
    """
    if isinstance(error, RateLimitWaitError):
        return False  # the engine's own limits: another try would wait as long
    if isinstance(error, ProviderRateLimitError | ProviderConnectionError):
        return True
    if isinstance(error, ProviderError) and error.status is not None:
        return error.status >= 500 or error.status in RETRIED_STATUSES
    return False


@dataclass(frozen=True, slots=True)
class Retries:
    """How an engine retries a failed provider call (``LLMEngine(retries=...)``).

    The wait before try ``n + 1`` is ``initial * multiplier ** (n - 1)`` seconds, at
    most ``maximum``, with full jitter (a random part of it, so clients that failed
    together do not retry together), and never less than the server's
    ``Retry-After``. A wait that would end after the prompt's timeout is not
    waited: the call fails at once (a fallback model, if any, is tried).

    Args:
        attempts: Tries in all, the first included (1: no retries; the default, 3, is
            what the ``openai`` SDK did before llmgine took retries over).
        initial: Seconds of the first wait.
        multiplier: How much each wait grows.
        maximum: The longest wait from backoff (a server's ``Retry-After`` may ask more).
        jitter: Randomise each wait between half and all of it.
        attempt_timeout: Seconds one try may take before it counts as a timeout and is
            retried (``None``: a try may use all the prompt's time left, so a server
            that hangs is never retried).
    """

    attempts: int = 3
    initial: float = 0.5
    multiplier: float = 2.0
    maximum: float = 30.0
    jitter: bool = True
    attempt_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigurationError(
                f"Retries(attempts=...) counts the first try too: 1 or more; got {self.attempts}."
            )
        finite = all(math.isfinite(v) for v in (self.initial, self.multiplier, self.maximum))
        if self.attempt_timeout is not None and not 0 < self.attempt_timeout < math.inf:
            raise ConfigurationError(
                f"Retries(attempt_timeout=...) must be more than 0 seconds (or None); "
                f"got {self.attempt_timeout}."
            )
        if not finite or self.initial < 0 or self.maximum < 0 or self.multiplier < 1:
            raise ConfigurationError(
                "Retries needs initial >= 0, maximum >= 0 and multiplier >= 1; got "
                f"initial={self.initial}, maximum={self.maximum}, multiplier={self.multiplier}."
            )

    def wait(self, attempt: int, error: BaseException) -> float:
        """Seconds to wait after try number ``attempt`` (1-based) failed with ``error``."""
        backoff = min(self.initial * self.multiplier ** (attempt - 1), self.maximum)
        if self.jitter:
            backoff *= random.uniform(0.5, 1.0)
        asked = error.retry_after if isinstance(error, ProviderError) else None
        return max(backoff, asked or 0.0)
