"""``%llmgine chat`` and ``model``: the default engine's replies, streamed into the cell."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import ValidationError

from llmgine._validation import validation_problems
from llmgine.errors import CommandFailedError, MagicError
from llmgine.llm.approval import ApproveToolCallCommand, ToolApprovalRequestedEvent
from llmgine.llm.engine import LLMEngine
from llmgine.notebook.notes import Note
from llmgine.notebook.runtime import get_runtime
from llmgine.notebook.sync import run_sync

__all__ = ["NO_STDIN", "approvals_asked_in_the_cell", "chat", "chat_options", "model"]

NO_STDIN = (
    "this notebook cannot answer questions while a cell runs; approve tool calls in the chat "
    "panel (`%llmgine ui`) instead of a `%llmgine chat` cell"
)

_CHAT_FLAGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--model": ("model", str),
    "--conversation": ("conversation_id", str),
    "--temperature": ("temperature", float),
    "--max-tokens": ("max_tokens", int),
    "--tool-choice": ("tool_choice", str),
    "--timeout": ("timeout", float),
}


def chat_options(line: str) -> tuple[dict[str, Any], str]:
    """Leading options (``--model M``, ``--temperature T``, ...), then the prompt, verbatim.

    An option's value may be quoted (``--conversation "support desk"``); the prompt is
    taken as written, quotes and all.
    """
    options: dict[str, Any] = {}
    rest = line.lstrip()
    while True:
        flag, _, after = rest.partition(" ")
        if flag not in _CHAT_FLAGS:
            if flag.startswith("--") and len(flag) > 2 and flag[2:3].isalpha():
                known = ", ".join(_CHAT_FLAGS)
                raise MagicError(f"unknown chat option {flag}; the options are {known}")
            return options, rest
        value, rest = _option_value(flag, after.lstrip())
        if not value:
            raise MagicError(f"{flag} needs a value")
        field, convert = _CHAT_FLAGS[flag]
        try:
            options[field] = convert(value)
        except ValueError:
            kind = "a whole number" if convert is int else "a number"
            raise MagicError(f"{flag} needs {kind}, not {value!r}") from None
        rest = rest.lstrip()


def _option_value(flag: str, text: str) -> tuple[str, str]:
    """The first word of ``text`` (or its quoted words, quotes removed) and what follows."""
    quote = text[:1]
    if quote not in ("'", '"'):
        value, _, rest = text.partition(" ")
        return value, rest
    end = text.find(quote, 1)
    if end < 0:
        raise MagicError(f"{flag}: no closing quote in {text!r}; close the quote")
    if text[end + 1 : end + 2] not in ("", " "):
        raise MagicError(f"{flag}: put a space after the closing quote in {text!r}")
    return text[1:end], text[end + 1 :]


def chat(shell: Any, line: str, cell: str | None) -> Any:
    """Stream the engine's reply to the prompt (the line, or a ``%%llmgine chat`` body)."""
    from IPython.display import Markdown, display

    options, prompt = chat_options(line)
    if cell is not None:
        if prompt.strip():
            raise MagicError(f"unexpected text after the options: {prompt.strip()!r}")
        prompt = cell
    if not prompt.strip():
        raise MagicError("give a prompt: `%llmgine chat Hello!` or a `%%llmgine chat` cell")
    runtime = get_runtime()
    options.setdefault("conversation_id", runtime.conversation_id)
    engine = runtime.get_engine()
    kernel = getattr(shell, "kernel", None)
    # Stream into one output updated in place only for a person at an interactive frontend
    # (it sends allow_stdin); runs by nbclient/nbval get the reply once, as they compare it.
    live = bool(getattr(kernel, "_allow_stdin", False))
    area: list[Any] = []  # the live output, made at the first piece of text

    async def stream() -> str:
        text = ""
        async for piece in engine.stream(prompt, **options):
            text += piece
            if not live:
                continue
            if area:
                area[0].update(Markdown(text))
            else:
                area.append(display(Markdown(text), display_id=True))
        await engine.bus.wait_for_events()
        return text

    try:
        with approvals_asked_in_the_cell(engine):  # the busy cell asks on its input line
            text = run_sync(stream())
    except CommandFailedError as exc:
        raise MagicError(str(exc)) from None
    except ValidationError as exc:
        problems = "; ".join(  # the fields as the options that set them: --max-tokens
            f"--{where.replace('_', '-')}: {message}" for where, message in validation_problems(exc)
        )
        raise MagicError(problems) from None
    if area:
        area[0].update(Markdown(text))  # the live output is the reply: one output, no blank
    else:
        display(Markdown(text) if kernel is not None else Note(text))
    return None


@contextlib.contextmanager
def approvals_asked_in_the_cell(engine: LLMEngine) -> Iterator[None]:
    """While a chat cell runs, ask for each tool approval on its input line ([y/N]).

    The cell is busy, so no button or other cell could answer: without an input line
    (a notebook run by nbclient, say) the call is denied at once, saying why, instead
    of waiting for the approval timeout.
    """
    from llmgine.notebook.widgets.approvals import call_summary

    async def ask(event: ToolApprovalRequestedEvent) -> None:
        if all(p.approval_id != event.approval_id for p in engine.approvals.pending):
            return  # a call waiting in another process of a shared bus: not this cell's
        question = f"{call_summary(event.tool_name, event.arguments)}: run it? [y/N] "
        reason: str | None
        try:
            # Blocking is intended: the cell is busy until the prompt ends anyway.
            answer = input(question)  # noqa: ASYNC250
        except Exception:  # no stdin here (StdinNotImplementedError, captured streams)
            approve, reason = False, NO_STDIN
        else:
            approve = answer.strip().lower() in ("y", "yes")
            reason = None if approve else (answer.strip() or "denied in the chat cell")
        command = ApproveToolCallCommand(
            approval_id=event.approval_id, call_id=event.call_id, approve=approve, reason=reason
        )
        await engine.bus.execute(command)

    engine.bus.register_event_handler(ToolApprovalRequestedEvent, ask)
    try:
        yield
    finally:
        engine.bus.unregister_event_handler(ToolApprovalRequestedEvent, ask)


def model(shell: Any, line: str, cell: str | None) -> Any:
    """Show the default engine's model, or set it."""
    engine = get_runtime().get_engine()
    name = line.strip()
    if name:
        engine.set_model(name)
        return Note(f"model set to `{engine.model}`")
    return Note(f"model: `{engine.model}`")
