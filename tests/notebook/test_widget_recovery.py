"""Panels that recover: a reply stopped before it began, a monitor and form after a new bus."""

from __future__ import annotations

import asyncio

import pytest
from IPython.core.interactiveshell import InteractiveShell
from pydantic import ValidationError

from llmgine.bus import MessageBus
from llmgine.errors import ConfigurationError
from llmgine.llm import LLMEngine, ScriptedProvider
from llmgine.notebook import get_bus
from llmgine.notebook.widgets import ChatWidget


async def test_a_reply_stopped_before_it_began_frees_the_panel(bus: MessageBus) -> None:
    chat = ChatWidget(LLMEngine(bus, provider=ScriptedProvider(["never shown", "second"])))
    await chat.listing
    task = chat.send("hello")
    assert task is not None
    chat.stop()  # the Stop button, clicked before the loop ran the reply's task
    await asyncio.gather(task, return_exceptions=True)
    assert not chat.generating
    assert not chat.input.disabled and not chat.send_button.disabled
    assert chat.stop_button.disabled
    assert chat.status.value == ""
    assert chat.history[-1][0] == "stopped"
    assert "[stopped]" in chat.transcript.children[-1].value
    again = chat.send("again")  # the panel works again
    assert again is not None
    await again
    assert chat.history[-1][0] == "assistant"


@pytest.mark.timeout(60)
def test_a_monitor_and_a_form_move_to_the_bus_a_new_start_makes(
    shell: InteractiveShell,
) -> None:
    for cell in [
        "%llmgine start --quiet --log-dir logs",
        "mon = %llmgine monitor\nform = %llmgine form PingCommand",
        "%llmgine start --quiet --log-dir logs\n%llmgine register PingCommand on_ping",
        "%llmgine publish PingedEvent(n=2)",
        "result = await form.execute()",
    ]:
        assert shell.run_cell(cell).error_in_exec is None, cell
    monitor, form = shell.user_ns["mon"], shell.user_ns["form"]
    assert monitor.bus is get_bus() and form.bus is get_bus()
    assert monitor.counts["PingedEvent"] == 1  # seen on the new bus
    assert shell.user_ns["result"].result == 10


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_tokens", 0), ("temperature", -1.0), ("temperature", float("nan"))],
)
async def test_a_chat_panel_refuses_an_option_no_prompt_takes_and_names_it(
    bus: MessageBus, option: str, value: float
) -> None:
    engine = LLMEngine(bus, provider=ScriptedProvider(["hi"]))
    with pytest.raises(ConfigurationError, match=f"^ChatWidget: {option}: "):
        ChatWidget(engine, **{option: value})


async def test_a_send_the_prompt_refuses_leaves_the_panel_as_it_was(bus: MessageBus) -> None:
    chat = ChatWidget(LLMEngine(bus, provider=ScriptedProvider(["hi"])))
    await chat.listing
    chat.prompt_options["max_tokens"] = 0  # changed after the panel was made
    chat.input.value = "my long carefully typed question"
    with pytest.raises(ValidationError, match="max_tokens"):
        chat.send()
    assert chat.input.value == "my long carefully typed question"
    assert chat.transcript.children == () and chat.history == []
    assert not chat.generating


@pytest.mark.timeout(60)
def test_panels_the_user_closed_stay_off_the_bus_a_new_start_makes(
    shell: InteractiveShell,
) -> None:
    for cell in [
        "%llmgine start --quiet --log-dir logs",
        "mon = %llmgine monitor\nform = %llmgine form PingCommand\npanel = %llmgine ui",
        "mon.close(); form.close(); panel.close()",
        "%llmgine start --quiet --log-dir logs",
        "%llmgine publish PingedEvent(n=2)",
    ]:
        assert shell.run_cell(cell).error_in_exec is None, cell
    monitor, form, panel = (shell.user_ns[name] for name in ("mon", "form", "panel"))
    bus = get_bus()
    assert monitor.bus is not bus and form.bus is not bus and panel.bus is not bus
    assert dict(monitor.counts) == {}  # it did not watch the new bus
    watching = [r.handler for r in bus.registrations() if "BusMonitor" in r.handler]
    assert watching == []
