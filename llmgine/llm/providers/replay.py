"""The replay provider: the LLM responses of a recorded llmgine log, played back in order."""

from __future__ import annotations

import logging
from pathlib import Path

from llmgine.errors import ConfigurationError, ProviderExhaustedError
from llmgine.llm.providers.base import Provider
from llmgine.llm.types import Completion, LLMRequest, ToolCall, Usage
from llmgine.observability.codec import read_log

__all__ = ["ReplayProvider", "log_file", "read_responses"]

logger = logging.getLogger(__name__)


def read_responses(path: str | Path) -> list[Completion]:
    """Return the ``LLMResponseEvent``s of an llmgine JSONL log as completions, in order.

    The log is read through :func:`llmgine.observability.codec.read_log`; lines that
    do not decode, and responses that do not fit, are skipped with a warning.

    Args:
        path: The log file, or a folder holding exactly one log (``*.jsonl``), as
            ``load_events`` finds a folder's logs.

    Raises:
        ConfigurationError: The file is missing or holds no LLM response, or the
            folder holds no log or several (the message names them).
    """
    path = log_file(Path(path))
    if not path.is_file():
        raise ConfigurationError(f"replay: no log file at {path}; record one with a real model.")
    completions: list[Completion] = []
    bad_lines: list[int] = []
    for envelope in read_log(path, bad_lines=bad_lines):
        if envelope.type != "LLMResponseEvent":
            continue
        data = envelope.data
        try:
            completions.append(
                Completion(
                    content=data.get("content"),
                    tool_calls=[ToolCall(**c) for c in data.get("tool_calls", [])],
                    finish_reason=data.get("finish_reason"),
                    usage=Usage(**data.get("usage", {})),
                    model=data.get("model"),
                )
            )
        except (ValueError, KeyError, TypeError):
            bad_lines.append(0)
    if bad_lines:
        logger.warning("replay: skipped %d unreadable lines in %s", len(bad_lines), path)
    if not completions:
        raise ConfigurationError(f"replay: {path} holds no LLMResponseEvent to replay.")
    return completions


def log_file(path: Path) -> Path:
    """The log to replay at ``path``: itself, or the one non-empty ``*.jsonl`` of a folder.

    A folder of several logs is several sessions: which one to replay is the user's
    choice, so none is taken (the newest is suggested).

    Raises:
        ConfigurationError: ``path`` is a folder with no log, or with several.
    """
    if not path.is_dir():
        return path
    logs = [f for f in path.glob("*.jsonl") if f.is_file() and f.stat().st_size > 0]
    if len(logs) == 1:
        return logs[0]
    if not logs:
        raise ConfigurationError(
            f"replay: the folder {path} holds no log (.jsonl file) directly in it; give the "
            'log file of the session to replay: "replay:<folder>/<session>.jsonl".'
        )
    logs.sort(key=lambda f: f.stat().st_mtime, reverse=True)
    shown = ", ".join(f.name for f in logs[:3]) + (", ..." if len(logs) > 3 else "")
    raise ConfigurationError(
        f"replay: the folder {path} holds {len(logs)} logs ({shown}), one a session; a replay "
        f'plays one session: give its file, e.g. "replay:{logs[0]}" (the newest).'
    )


class ReplayProvider(Provider):
    """Answers with the responses recorded in an llmgine log, one per call, in order.

    Record a session with a real model once; replay it anywhere, with no key,
    deterministically. The requests are not checked against the recording.

    Args:
        path: The JSONL log to replay, or a folder holding just that log.
    """

    name = "replay"
    cacheable = False  # the answer is the recording's next one, not a function of the request

    def __init__(self, path: str | Path, *, model: str | None = None) -> None:
        self.path = Path(path)
        self.responses = read_responses(self.path)
        self.position = 0
        super().__init__(model or self.responses[0].model or "replay")

    def __repr__(self) -> str:
        return f"ReplayProvider({str(self.path)!r}, {self.position}/{len(self.responses)} used)"

    @property
    def model_string(self) -> str:
        """``"replay:<path>"``: the string that replays the same log again."""
        return f"replay:{self.path}"

    async def complete(self, request: LLMRequest) -> Completion:
        """Return the next recorded response."""
        if self.position >= len(self.responses):
            raise ProviderExhaustedError(
                f"replay: all {len(self.responses)} responses recorded in {self.path} were used; "
                "the session asks for more calls than were recorded."
            )
        completion = self.responses[self.position]
        self.position += 1
        return completion
