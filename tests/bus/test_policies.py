"""Command policies as middleware: Retry, CircuitBreaker, DeadLetters (and bus.redrive)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmgine.bus import MessageBus
from llmgine.bus.policies import (
    CircuitBreaker,
    CircuitStateChangedEvent,
    CommandRetriedEvent,
    DeadLetterEvent,
    DeadLetters,
    Retry,
)
from llmgine.errors import ConfigurationError, DeadLetterNotFoundError
from llmgine.messages import Command, Event


class FetchCommand(Command):
    url: str


class OtherCommand(Command):
    pass


class Flaky:
    """A handler that raises ``error`` for its first ``failures`` calls, then answers."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self, command: Command) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return "fetched"


def collect(bus: MessageBus, *types: type[Event]) -> list[Any]:
    seen: list[Any] = []
    for event_type in types:
        bus.register_event_handler(event_type, seen.append)
    return seen


@pytest.mark.timeout(20)
async def test_retry_runs_a_failing_command_again_until_it_succeeds(bus: MessageBus) -> None:
    handler = Flaky(failures=2)
    bus.register_command_handler(FetchCommand, handler)
    retried = collect(bus, CommandRetriedEvent)
    bus.add_middleware(Retry(FetchCommand, attempts=3, backoff=0.001))
    result = await bus.execute(FetchCommand(url="u"))
    await bus.wait_for_events()
    assert result.success and result.result == "fetched"
    assert result.metadata["attempts"] == 3
    assert handler.calls == 3
    assert [(e.attempt, e.error_type) for e in retried] == [
        (1, "ConnectionError"),
        (2, "ConnectionError"),
    ]


@pytest.mark.timeout(20)
async def test_retry_gives_up_after_its_attempts_with_the_last_failure(bus: MessageBus) -> None:
    handler = Flaky(failures=10)
    bus.register_command_handler(FetchCommand, handler)
    bus.add_middleware(Retry(FetchCommand, attempts=2, backoff=0.001))
    result = await bus.execute(FetchCommand(url="u"))
    assert not result.success
    assert result.error == "failure 2"
    assert result.metadata["attempts"] == 2
    assert handler.calls == 2


@pytest.mark.timeout(20)
async def test_retry_on_retries_only_the_failures_it_names(bus: MessageBus) -> None:
    handler = Flaky(failures=1, error=KeyError)
    bus.register_command_handler(FetchCommand, handler)
    bus.add_middleware(Retry(FetchCommand, attempts=3, backoff=0.001, retry_on=[OSError]))
    result = await bus.execute(FetchCommand(url="u"))
    assert not result.success and result.error_type == "KeyError"
    assert handler.calls == 1
    # ConnectionError is a subclass of OSError: it is retried.
    other = Flaky(failures=1, error=ConnectionError)
    bus.register_command_handler(FetchCommand, other, replace=True)
    assert (await bus.execute(FetchCommand(url="u"))).success
    assert other.calls == 2


@pytest.mark.timeout(20)
async def test_retry_leaves_other_commands_alone(bus: MessageBus) -> None:
    handler = Flaky(failures=1)
    bus.register_command_handler(OtherCommand, handler)
    bus.add_middleware(Retry(FetchCommand, attempts=3, backoff=0.001))
    assert not (await bus.execute(OtherCommand())).success
    assert handler.calls == 1


def test_policies_check_their_settings() -> None:
    with pytest.raises(ConfigurationError, match="1 or more"):
        Retry(FetchCommand, attempts=0)
    with pytest.raises(ConfigurationError, match="Command classes"):
        Retry(str)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="reset_after"):
        CircuitBreaker(FetchCommand, reset_after=0)
    with pytest.raises(ConfigurationError, match="keep"):
        DeadLetters(keep=0)


@pytest.mark.timeout(20)
async def test_an_open_circuit_fails_fast_then_a_trial_closes_it(bus: MessageBus) -> None:
    handler = Flaky(failures=2)
    bus.register_command_handler(FetchCommand, handler)
    changes = collect(bus, CircuitStateChangedEvent)
    breaker = CircuitBreaker(FetchCommand, failures=2, reset_after=60)
    bus.add_middleware(breaker)
    for _ in range(2):
        assert not (await bus.execute(FetchCommand(url="u"))).success
    assert breaker.state == "open"
    refused = await bus.execute(FetchCommand(url="u"))
    assert not refused.success
    assert refused.error_type == "CircuitOpenError"
    assert "open after 2 failures" in (refused.error or "")
    assert handler.calls == 2  # the handler was not called
    breaker._opened_at -= 61  # the pause is over (instead of waiting a minute)
    trial = await bus.execute(FetchCommand(url="u"))
    assert trial.success
    assert breaker.state == "closed"
    await bus.wait_for_events()
    assert [(e.previous, e.state) for e in changes] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


@pytest.mark.timeout(20)
async def test_a_failed_trial_opens_the_circuit_again(bus: MessageBus) -> None:
    bus.register_command_handler(FetchCommand, Flaky(failures=5))
    breaker = CircuitBreaker(FetchCommand, failures=1, reset_after=60)
    bus.add_middleware(breaker)
    await bus.execute(FetchCommand(url="u"))
    breaker._opened_at -= 61
    assert not (await bus.execute(FetchCommand(url="u"))).success
    assert breaker.state == "open"
    assert (await bus.execute(FetchCommand(url="u"))).error_type == "CircuitOpenError"


@pytest.mark.timeout(20)
async def test_a_command_that_still_fails_is_a_dead_letter_that_can_be_redriven(
    bus: MessageBus, read_log: Any
) -> None:
    handler = Flaky(failures=4)  # two tries each: the first run and the first redrive fail
    bus.register_command_handler(FetchCommand, handler)
    letters = DeadLetters()
    bus.add_middleware(letters)
    bus.add_middleware(Retry(FetchCommand, attempts=2, backoff=0.001))
    command = FetchCommand(url="https://example.invalid/a")
    failed = await bus.execute(command)
    assert not failed.success
    [letter] = bus.dead_letters
    assert letter.command.id == command.id
    assert letter.result.error == "failure 2"
    again = await bus.redrive(letter.id)  # tries 3 and 4 fail too: a new dead letter
    assert not again.success
    assert again.metadata["redrive_of"] == letter.id
    [second] = bus.dead_letters
    assert second.redrive_of == letter.id
    assert second.command.id != command.id
    fixed = await bus.redrive(second.id)
    assert fixed.success and fixed.result == "fetched"
    assert fixed.metadata["redrive_of"] == second.id
    assert bus.dead_letters == []
    await bus.wait_for_events()
    bus.flush()
    logged = [r for r in read_log(bus.log_path) if r["type"] == "DeadLetterEvent"]
    assert [r["data"]["dead_letter_id"] for r in logged] == [letter.id, second.id]
    assert logged[1]["data"]["redrive_of"] == letter.id


@pytest.mark.timeout(20)
async def test_redriving_an_unknown_dead_letter_says_so(bus: MessageBus) -> None:
    bus.add_middleware(DeadLetters())
    with pytest.raises(DeadLetterNotFoundError, match=r"bus\.dead_letters"):
        await bus.redrive("nope")


async def test_a_policy_belongs_to_one_bus(tmp_path: Path) -> None:
    letters = DeadLetters()
    first, second = MessageBus(log_dir=None), MessageBus(log_dir=None)
    first.add_middleware(letters)
    with pytest.raises(ConfigurationError, match="another bus"):
        second.add_middleware(letters)


@pytest.mark.timeout(20)
async def test_dead_letters_are_events_in_the_log(bus: MessageBus) -> None:
    bus.register_command_handler(FetchCommand, Flaky(failures=1))
    events = collect(bus, DeadLetterEvent)
    bus.add_middleware(DeadLetters())
    await bus.execute(FetchCommand(url="u"))
    await bus.wait_for_events()
    assert [(e.command_type, e.error_type) for e in events] == [("FetchCommand", "ConnectionError")]


@pytest.mark.timeout(20)
async def test_one_dead_letter_redriven_twice_at_once_runs_once(bus: MessageBus) -> None:
    import asyncio

    handler = Flaky(failures=1)
    bus.register_command_handler(FetchCommand, handler)
    bus.add_middleware(DeadLetters())
    await bus.execute(FetchCommand(url="u"))
    [letter] = bus.dead_letters
    outcomes = await asyncio.gather(
        bus.redrive(letter.id), bus.redrive(letter.id), return_exceptions=True
    )
    assert handler.calls == 2  # the first run and one redrive
    assert sum(isinstance(o, DeadLetterNotFoundError) for o in outcomes) == 1


def test_policies_refuse_waits_that_are_not_numbers() -> None:
    nan, inf = float("nan"), float("inf")
    with pytest.raises(ConfigurationError):
        Retry(FetchCommand, backoff=nan)
    with pytest.raises(ConfigurationError):
        Retry(FetchCommand, max_backoff=inf)
    with pytest.raises(ConfigurationError):
        CircuitBreaker(FetchCommand, reset_after=nan)
