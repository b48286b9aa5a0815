"""The offline demo behind ``python -m llmgine demo``: the bus at work in a few lines.

Command latency here is the one definition llmgine uses everywhere: the time the
handler took (``CommandResult.duration_ms``), which ``llmgine log`` summarizes too.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TextIO

from llmgine.bus import MessageBus
from llmgine.llm import LLMEngine, ToolCallEvent, ToolResultEvent
from llmgine.messages import Command, CommandResult, Event
from llmgine.observability import Metric, MetricEvent, read_log

__all__ = ["DemoSummary", "run_demo"]

INTRO = (
    "llmgine demo: commands and events on one bus, each message logged as a JSON line; "
    "then an offline chat that calls a tool.\n"
)
LATENCY = (
    "latency: the time in the handler (CommandResult.duration_ms), as `llmgine log` reports it"
)

_DOCUMENTS = {
    "intro.txt": "llmgine carries commands and events on one bus and logs every one of them",
    "empty.txt": "",
    "notes.txt": "spans group events under the command that caused them",
}


class SummarizeDocumentCommand(Command):
    """Count the words of one document."""

    name: str
    text: str


class SummarizeCorpusCommand(Command):
    """Summarize every document, one nested command each."""

    names: list[str]


class DocumentSummarizedEvent(Event):
    """A document was summarized."""

    name: str
    words: int


def _describe(label: str, result: CommandResult) -> str:
    took = f"{result.duration_ms or 0.0:.1f} ms"
    if result.success:
        return f"  {label:<40} ok      {took:>8}  -> {result.result}"
    failure = f"{result.error_type}: {result.error}"
    return (
        f"  {label:<40} failed  {took:>8}  {failure} (deliberate: a failure is logged, not fatal)"
    )


def word_count(document: str) -> int:
    """Count the words of one of the demo's documents.

    Args:
        document: The document's name, e.g. intro.txt.
    """
    return len(_DOCUMENTS.get(document, "").split())


class DemoSummary:
    """What the demo did: the log it wrote and the count of each line type."""

    def __init__(self, log_path: Path, counts: Counter[str], replies: list[str]) -> None:
        self.log_path = log_path
        self.counts = counts
        self.replies = replies

    @property
    def lines(self) -> int:
        """Number of lines in the log."""
        return sum(self.counts.values())


async def run_demo(log_dir: str | Path, out: TextIO) -> DemoSummary:
    """Run the demo (the bus, then an offline chat with a tool); return what it logged."""
    bus = MessageBus(
        log_dir=log_dir,
        log_filename="demo.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
    )
    if bus.log_path is not None and bus.log_path.exists():
        bus.log_path.unlink()
    words_seen: list[int] = []

    async def summarize(cmd: SummarizeDocumentCommand) -> int:
        if not cmd.text:
            raise ValueError(f"{cmd.name} is empty: nothing to summarize")
        words = len(cmd.text.split())
        await bus.publish(DocumentSummarizedEvent(name=cmd.name, words=words))
        return words

    async def summarize_corpus(cmd: SummarizeCorpusCommand) -> dict[str, int | None]:
        results = {}
        for name in cmd.names:
            result = await bus.execute(SummarizeDocumentCommand(name=name, text=_DOCUMENTS[name]))
            out.write(_describe(f"SummarizeDocumentCommand({name})", result) + "\n")
            results[name] = result.result
        return results

    def count_words(event: DocumentSummarizedEvent) -> None:
        words_seen.append(event.words)

    def show_call(event: ToolCallEvent) -> None:
        out.write(f"     (tool call: {event.tool_name} {event.arguments})\n")

    def show_result(event: ToolResultEvent) -> None:
        shown = f"error: {event.error}" if event.error else repr(event.result)
        out.write(f"     (tool result: {shown})\n")

    engine = LLMEngine(bus, model="offline", tools=[word_count])
    out.write(INTRO)
    out.write(f"\n1. Commands, one per document inside a corpus command; {LATENCY}:\n")
    async with bus:
        bus.register_command_handler(SummarizeDocumentCommand, summarize)
        bus.register_command_handler(SummarizeCorpusCommand, summarize_corpus)
        bus.register_event_handler(DocumentSummarizedEvent, count_words)
        bus.register_event_handler(ToolCallEvent, show_call)
        bus.register_event_handler(ToolResultEvent, show_result)
        result = await bus.execute(SummarizeCorpusCommand(names=list(_DOCUMENTS)))
        out.write(_describe("SummarizeCorpusCommand", result) + "\n")
        await bus.wait_for_events()
        out.write(
            f"\n2. Events: {len(words_seen)} DocumentSummarizedEvent handled; "
            f"metrics published: documents={len(_DOCUMENTS)}, words={sum(words_seen)}\n"
        )
        await bus.publish(
            MetricEvent(
                metrics=[
                    Metric(name="documents", value=len(_DOCUMENTS)),
                    Metric(name="words", value=sum(words_seen), unit="words"),
                ]
            )
        )
        await bus.wait_for_events()
        out.write("\n3. A chat with the offline model (no key, no network), as PromptCommands:\n")
        replies = []
        for prompt in ("Hello! What are you?", "Use word_count on document=notes.txt"):
            out.write(f"you: {prompt}\n")
            replies.append(await engine.chat(prompt))
            await bus.wait_for_events()  # the tool lines of this turn come first
            out.write(f"llm: {replies[-1]}\n\n")
    assert bus.log_path is not None
    counts = Counter(envelope.type for envelope in read_log(bus.log_path))
    return DemoSummary(bus.log_path, counts, replies)
