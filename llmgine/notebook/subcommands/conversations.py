"""``%llmgine conversations``: list the default engine's conversations, pick one to continue."""

from __future__ import annotations

import uuid
from typing import Any

from llmgine.errors import MagicError
from llmgine.notebook.arguments import split
from llmgine.notebook.notes import Note
from llmgine.notebook.runtime import get_runtime
from llmgine.notebook.subcommands.costs import by, spent
from llmgine.notebook.sync import run_sync

__all__ = ["conversations"]

_USAGE = "usage: %llmgine conversations [use ID | new [ID]]"


def conversations(shell: Any, line: str, cell: str | None) -> Any:
    """The conversations as a DataFrame, with what each cost; ``use ID`` or ``new [ID]``.

    Its ``session_cost_usd`` is what each conversation's calls cost in this session
    (this bus's log, else the engine's spend): the turns of an earlier kernel, read
    back from the store, are not in it.

    ``use ID`` continues a stored conversation, ``new [ID]`` starts one: the one
    ``%llmgine chat`` and new chat panels continue.
    """
    words = split(line, "conversations")
    runtime = get_runtime()
    engine = runtime.get_engine()
    listed = run_sync(engine.conversations.alist())  # the store is read off the event loop
    if not words:
        listed.insert(1, "current", listed["id"] == runtime.conversation_id)
        calls, _ = spent(engine)
        # The stored conversations keep no cost: this session's is the one known.
        listed["session_cost_usd"] = listed["id"].map(by(calls, "conversation_id")["cost_usd"])
        return listed
    action, rest = words[0], words[1:]
    if action == "use" and len(rest) == 1:
        chosen = rest[0]
        if chosen not in set(listed["id"]):
            known = ", ".join(f"`{i}`" for i in listed["id"]) or "none yet"
            raise MagicError(
                f"no conversation {chosen!r} is stored (the conversations: {known}); "
                f"start one with `%llmgine conversations new {chosen}`"
            )
        runtime.conversation_id = chosen
        turns = int(listed.loc[listed["id"] == chosen, "turns"].iloc[0])
        return Note(
            f"`%llmgine chat` and new chat panels continue conversation `{chosen}` "
            f"({turns} turn{'' if turns == 1 else 's'} so far)"
        )
    if action == "new" and len(rest) <= 1:
        chosen = rest[0] if rest else f"chat-{uuid.uuid4().hex[:8]}"
        if chosen in set(listed["id"]):
            raise MagicError(
                f"conversation {chosen!r} exists; continue it with "
                f"`%llmgine conversations use {chosen}` or give another id"
            )
        runtime.conversation_id = chosen
        return Note(f"`%llmgine chat` and new chat panels start conversation `{chosen}`")
    raise MagicError(f"{_USAGE} (not {line.strip()!r})")
