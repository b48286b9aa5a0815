"""Deciding tool calls from cells and panels when several conversations wait with one call id."""

from __future__ import annotations

import asyncio

import pytest
from IPython.core.interactiveshell import InteractiveShell

from llmgine.llm import ToolApprovalRequestedEvent
from llmgine.notebook import MagicError, get_engine, run_sync
from llmgine.notebook.widgets import ChatWidget


def magic(shell: InteractiveShell, line: str) -> object:
    return shell.run_line_magic("llmgine", line)


def _two_panels_waiting(
    shell: InteractiveShell,
) -> tuple[dict[str, ChatWidget], dict[str, ToolApprovalRequestedEvent], dict[str, object]]:
    """Panels of conversations "paris" and "rome" each wait to run their ``call_1_0``."""
    magic(shell, "start --quiet")
    magic(shell, "tools --approval get_weather")
    engine = get_engine()  # the offline model: call_1_0 is every conversation's first call
    requests: dict[str, ToolApprovalRequestedEvent] = {}
    both = asyncio.Event()

    def seen(event: ToolApprovalRequestedEvent) -> None:
        requests[event.conversation_id] = event
        if len(requests) == 2:
            both.set()

    engine.bus.register_event_handler(ToolApprovalRequestedEvent, seen)
    panels = {city: ChatWidget(engine, conversation_id=city) for city in ("paris", "rome")}
    tasks = {
        "paris": panels["paris"].send("What is the weather in Paris?"),
        "rome": panels["rome"].send("What is the weather in Rome?"),
    }

    async def wait() -> None:
        await asyncio.wait_for(both.wait(), 10)

    run_sync(wait())
    assert requests["paris"].call_id == requests["rome"].call_id == "call_1_0"
    return panels, requests, tasks  # type: ignore[return-value]


@pytest.mark.timeout(60)
def test_approve_by_approval_id_runs_that_conversations_call_only(shell: InteractiveShell) -> None:
    panels, requests, tasks = _two_panels_waiting(shell)
    with pytest.raises(MagicError) as listed:
        magic(shell, "approve")  # two calls wait: name one
    message = str(listed.value)
    assert (
        "give the approval id (or a call id): `%llmgine approve ID`; waiting for approval: call_1_0"
        in message
    )
    assert requests["paris"].approval_id in message and requests["rome"].approval_id in message
    with pytest.raises(MagicError, match="2 tool calls 'call_1_0' wait for approval"):
        magic(shell, "approve call_1_0")  # refused, never a guess

    note = magic(shell, f"approve {requests['rome'].approval_id}")
    assert repr(note) == "approved get_weather (call_1_0)"
    run_sync(tasks["rome"])  # type: ignore[arg-type]
    assert "Sunny in Rome" in panels["rome"].history[-1][1]
    assert not tasks["paris"].done()  # type: ignore[attr-defined]
    assert panels["paris"].approvals.waiting == ["call_1_0"]

    # A unique start of an approval id is enough; the reason goes to the model.
    note = magic(shell, f"deny {requests['paris'].approval_id[:8]} not Paris")
    assert repr(note) == "denied get_weather (call_1_0)"
    run_sync(tasks["paris"])  # type: ignore[arg-type]
    assert "the user denied the call: not Paris" in panels["paris"].history[-1][1]


@pytest.mark.timeout(60)
def test_a_panels_buttons_decide_its_own_call_not_anothers_with_the_same_id(
    shell: InteractiveShell,
) -> None:
    panels, _, tasks = _two_panels_waiting(shell)
    (row,) = [
        c for c in panels["paris"].transcript.children if "llmgine-approval" in c._dom_classes
    ]
    label, approve_button, _ = row.children
    assert "Paris" in label.value
    approve_button.click()
    run_sync(tasks["paris"])  # type: ignore[arg-type]
    assert "Sunny in Paris" in panels["paris"].history[-1][1]
    assert "approved" in label.value
    assert not tasks["rome"].done()  # type: ignore[attr-defined]
    assert [p.conversation_id for p in get_engine().approvals.pending] == ["rome"]
    decided = run_sync(panels["rome"].deny("call_1_0", reason="stay home"))
    assert decided.success, decided.error
    run_sync(tasks["rome"])  # type: ignore[arg-type]
    assert "the user denied the call: stay home" in panels["rome"].history[-1][1]


def test_a_chat_cell_asks_only_about_its_own_calls_not_those_waiting_elsewhere(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins
    from uuid import uuid4

    from IPython.utils.capture import capture_output

    from llmgine.llm import ToolCallEvent

    magic(shell, "start --quiet")
    magic(shell, "tools --approval get_weather")
    engine = get_engine()

    async def a_call_waits_in_another_process(event: ToolCallEvent) -> None:
        # What a worker of a shared bus publishes for a call of its own conversation.
        await engine.bus.publish(
            ToolApprovalRequestedEvent(
                call_id="call_1_0",
                tool_name="delete_file",
                arguments='{"path": "/home/user/thesis.tex"}',
                conversation_id="someone-else",
                prompt_id=uuid4(),
                timeout=300,
            )
        )

    engine.bus.register_event_handler(ToolCallEvent, a_call_waits_in_another_process)
    asked: list[str] = []

    def answer(question: str) -> str:
        asked.append(question)
        return "y"

    monkeypatch.setattr(builtins, "input", answer)
    with capture_output() as captured:
        magic(shell, "chat What is the weather in Paris?")
    assert asked == ["tool · get_weather(city='Paris'): run it? [y/N] "]
    assert "get_weather returned Sunny in Paris" in captured.outputs[0].data["text/plain"]
