"""Rich display in notebooks: results, messages and the bus render as escaped HTML."""

from __future__ import annotations

from pydantic import Field

from llmgine import CommandResult, MessageBus
from llmgine.messages import Event


class NoteTakenEvent(Event):
    text: str
    tags: list[str] = Field(default_factory=list)


def test_a_failed_result_shows_its_error_escaped() -> None:
    result = CommandResult(
        success=False,
        error="<script>x</script>",
        error_type="ValueError",
        command_type="SaveCommand",
    )
    html = result._repr_html_()
    assert "SaveCommand: FAILED" in html
    assert "ValueError: &lt;script&gt;x&lt;/script&gt;" in html
    assert "<script>" not in html
    assert result._repr_markdown_() == "**SaveCommand** failed: `ValueError: <script>x</script>`"


def test_a_successful_result_shows_value_duration_and_metadata() -> None:
    result = CommandResult(
        success=True,
        result={"n": 1},
        command_type="AddCommand",
        duration_ms=1.25,
        metadata={"k": 2},
    )
    html = result._repr_html_()
    assert "AddCommand: OK" in html
    assert "{&quot;n&quot;: 1}" in html
    assert "1.2 ms" in html or "1.3 ms" in html
    assert ">k<" in html


def test_a_message_is_a_table_of_its_fields() -> None:
    event = NoteTakenEvent(text="<b>bold</b>", tags=["a"])
    html = event._repr_html_()
    assert html.count("<tr>") == 6  # id, timestamp, session_id, metadata, text, tags
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert str(event.id) in html


def test_the_bus_shows_its_status() -> None:
    html = MessageBus(log_dir=None)._repr_html_()
    assert "stopped" in html
    assert "events published" in html
