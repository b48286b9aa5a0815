"""The widgets where users see them: rendered by JupyterLab in Chromium, clicked like a person.

Screenshots of the chat and the monitor go to ``LLMGINE_SCREENSHOTS`` (the README's images
come from ``LLMGINE_SCREENSHOTS=docs/images``), else to the test's temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest

pytestmark = pytest.mark.timeout(420)

SETUP = '''
import asyncio

from llmgine import Command
from llmgine.llm import Completion, OfflineProvider, StreamChunk
from llmgine.notebook import get_bus, get_engine


WORD_PACE = 0.05  # seconds between words of the slow story: a slow model, not a wait for the bus


class StoryProvider(OfflineProvider):
    """The offline model, except that a long story streams slowly (so Stop can be clicked)."""

    async def stream(self, request):
        if "long story" not in (request.messages[-1].content or ""):
            async for chunk in super().stream(request):
                yield chunk
            return
        words = []
        for i in range(600):
            words.append(f"word{i} ")
            yield StreamChunk(delta=words[-1])
            await asyncio.sleep(WORD_PACE)
        yield StreamChunk(completion=Completion(content="".join(words), finish_reason="stop"))


def get_weather(city: str) -> str:
    """Get the current weather.

    Args:
        city: The city.
    """
    return f"Sunny, 21°C in {city}"


def delete_file(path: str) -> str:
    """Delete a file (only after a person approves).

    Args:
        path: The file.
    """
    return f"deleted {path}"


class BookRoomCommand(Command):
    """Book a meeting room."""

    room: str
    """Which room."""
    people: int = 2


engine = get_engine()
engine.provider = StoryProvider()
engine.register_tool(get_weather)
engine.register_tool(delete_file, requires_approval=True)
get_bus().register_command_handler(BookRoomCommand, lambda c: f"{c.room} booked for {c.people}")
'''

CELLS = [
    "%load_ext llmgine\n%llmgine start --quiet",
    SETUP,
    "%llmgine ui",
    "%llmgine monitor",
    "%llmgine form BookRoomCommand",
]


def write_notebook(root: Path) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    nbformat.write(nb, root / "widgets.ipynb")
    return "widgets.ipynb"


def screenshots() -> Path | None:
    where = os.environ.get("LLMGINE_SCREENSHOTS")
    return Path(where) if where else None


def run_all_cells(page: Any) -> None:
    page.locator(".jp-Notebook").first.wait_for()
    page.get_by_text("| Idle").wait_for(timeout=90_000)  # the kernel is up
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()


def monitor_rows(monitor: Any) -> int:
    return int(monitor.locator("table tbody tr").count())


def test_chat_monitor_and_form_work_in_jupyterlab(
    lab: Any, browser_page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    shots = screenshots() or tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    page.goto(lab.notebook_url(write_notebook(lab.root)))
    run_all_cells(page)
    chat = page.locator(".llmgine-chat")
    monitor = page.locator(".llmgine-monitor")
    form = page.locator(".llmgine-form")
    expect(chat).to_be_visible(timeout=120_000)
    expect(form).to_be_visible(timeout=60_000)

    # The chat: a prompt, a streamed reply, a tool step.
    chat.locator("textarea").fill("What is the weather in Paris?")
    chat.get_by_role("button", name="Send").click()
    expect(chat).to_contain_text("get_weather returned Sunny, 21°C in Paris.")
    expect(chat.locator("details summary")).to_contain_text("get_weather(city='Paris')")
    expect(chat.get_by_role("button", name="Send")).to_be_enabled()
    chat.screenshot(path=str(shots / "chat.png"))

    # Approval: the call waits for a person; Approve runs it and the reply finishes.
    chat.locator("textarea").fill("Please delete_file path=notes.txt")
    chat.get_by_role("button", name="Send").click()
    approval = chat.locator(".llmgine-approval")
    expect(approval).to_contain_text("delete_file(path='notes.txt') waits for your approval")
    expect(chat).not_to_contain_text("delete_file returned")
    approval.get_by_role("button", name="Approve").click()
    expect(chat).to_contain_text("delete_file returned deleted notes.txt")
    expect(approval).to_contain_text("approved")
    expect(approval.get_by_role("button")).to_have_count(0)
    expect(chat.get_by_role("button", name="Send")).to_be_enabled()

    # The monitor gained rows from the chat's events.
    expect(monitor.locator("table tbody tr").first).to_be_visible()
    rows_after_chat = monitor_rows(monitor)
    assert rows_after_chat > 0

    # Stop during a long reply: the text stops, [stopped] is shown, the input comes back.
    chat.locator("textarea").fill("Tell me a long story")
    chat.get_by_role("button", name="Send").click()
    expect(chat).to_contain_text("word5 ")
    expect(chat.get_by_role("button", name="Send")).to_be_disabled()
    chat.get_by_role("button", name="Stop").click()
    expect(chat).to_contain_text("[stopped]")
    expect(chat.get_by_role("button", name="Send")).to_be_enabled()
    expect(chat).not_to_contain_text("word599")

    # Clear empties the transcript.
    chat.get_by_role("button", name="Clear").click()
    expect(chat).not_to_contain_text("Paris")
    expect(chat).not_to_contain_text("[stopped]")

    # The form: a valid command runs; an invalid one shows the validation message.
    form.locator("input[type=text]").first.fill("Blue room")
    form.get_by_role("button", name="Execute").click()
    expect(form).to_contain_text("Blue room booked for 2")
    form.locator("input[type=text]").first.fill("")
    form.get_by_role("button", name="Execute").click()
    expect(form).to_contain_text("Field required")
    expect(form.locator("ul li b")).to_have_text("room")

    # The monitor kept up, and its filter works.
    expect(monitor).to_contain_text("CommandResultEvent")
    assert monitor_rows(monitor) >= min(rows_after_chat + 1, 20)
    monitor.locator("select").select_option("ToolCallEvent")
    expect(monitor.locator("table tbody tr")).to_have_count(2)  # get_weather, delete_file
    expect(monitor.locator("table tbody tr td").nth(2)).to_have_text("ToolCallEvent")
    monitor.locator("select").select_option("(all types)")
    expect(monitor.locator("table tbody tr").nth(1)).to_be_visible()
    monitor.screenshot(path=str(shots / "monitor.png"))
    assert (shots / "chat.png").stat().st_size > 5_000
    assert (shots / "monitor.png").stat().st_size > 5_000
