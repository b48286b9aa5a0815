"""Write a large, realistic llmgine log: the real envelope, a mix of every kind of line.

Each "turn" is a command with its span, a nested LLM call span with GenAI attributes,
an LLM response, metrics and the command's result (one in ten fails), i.e. 10 lines.

    python benchmarks/make_log.py PATH [--lines 1000000]
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from llmgine import (
    CommandErrorEvent,
    CommandResult,
    CommandResultEvent,
    Metric,
    MetricEvent,
    TraceEvent,
)
from llmgine.llm import LLMResponseEvent, PromptCommand, Usage
from llmgine.messages import Event, Message
from llmgine.observability.codec import Kind, encode
from llmgine.observability.events import SpanContext
from llmgine.observability.spans import new_span_context

LINES_PER_TURN = 10


def encode_line(kind: Kind, message: Message, span: SpanContext | None) -> bytes:
    return encode(kind, message, span)


def encode_fields(
    cls: type[Event], fields: dict[str, Any], *, session_id: str, span: SpanContext
) -> bytes:
    return encode("event", cls(session_id=session_id, **fields), span)


def write_log(path: Path, lines: int, seed: int = 7) -> int:
    """Write about ``lines`` lines to ``path``; return how many were written."""
    rng = random.Random(seed)
    random.seed(seed)
    t0 = datetime(2026, 11, 24, 12, tzinfo=UTC)
    written = 0
    with path.open("wb") as out:
        for turn in range(lines // LINES_PER_TURN):
            now = t0 + timedelta(milliseconds=turn * 50)
            root = new_span_context()
            llm = new_span_context(root)
            session = f"user-{turn % 7}"
            command = PromptCommand(prompt=f"question {turn}", session_id=session, timestamp=now)
            failed = turn % 10 == 9
            latency = rng.uniform(80, 900)
            usage = Usage(input_tokens=rng.randint(10, 900), output_tokens=rng.randint(5, 400))
            buf = [
                encode_fields(
                    TraceEvent,
                    {
                        "name": "PromptCommand",
                        "span_context": root,
                        "span_kind": "CHAIN",
                        "start_time": now,
                        "attributes": {"llmgine.command.type": "PromptCommand"},
                    },
                    session_id=session,
                    span=root,
                ),
                encode_line("command", command, root),
                encode_fields(
                    TraceEvent,
                    {
                        "name": "chat gpt-4o-mini",
                        "span_context": llm,
                        "span_kind": "LLM",
                        "start_time": now,
                        "attributes": {
                            "gen_ai.operation.name": "chat",
                            "gen_ai.request.model": "gpt-4o-mini",
                        },
                    },
                    session_id=session,
                    span=llm,
                ),
                encode_line(
                    "event",
                    LLMResponseEvent(
                        conversation_id=f"c{turn % 13}",
                        prompt_id=command.id,
                        content=None if failed else f"answer {turn}",
                        model="gpt-4o-mini",
                        provider="openai",
                        finish_reason="stop",
                        usage=usage,
                        latency_ms=latency,
                        session_id=session,
                    ),
                    llm,
                ),
                encode_fields(
                    TraceEvent,
                    {
                        "name": "chat gpt-4o-mini",
                        "span_context": llm,
                        "span_kind": "LLM",
                        "end_time": now + timedelta(milliseconds=latency),
                        "status": "OK",
                        "duration_ms": latency,
                        "attributes": {
                            "gen_ai.operation.name": "chat",
                            "gen_ai.request.model": "gpt-4o-mini",
                            "gen_ai.usage.input_tokens": usage.input_tokens,
                            "gen_ai.usage.output_tokens": usage.output_tokens,
                            "gen_ai.response.finish_reasons": ["stop"],
                        },
                    },
                    session_id=session,
                    span=llm,
                ),
                encode_line(
                    "event",
                    MetricEvent(
                        metrics=[
                            Metric(
                                name="gen_ai.usage.input_tokens",
                                value=usage.input_tokens,
                                unit="tokens",
                                tags={"model": "gpt-4o-mini"},
                            ),
                            Metric(
                                name="gen_ai.usage.output_tokens",
                                value=usage.output_tokens,
                                unit="tokens",
                                tags={"model": "gpt-4o-mini"},
                            ),
                        ],
                        session_id=session,
                    ),
                    llm,
                ),
                encode_line(
                    "event",
                    MetricEvent(
                        metrics=[Metric(name="llm.latency_ms", value=latency, unit="ms")],
                        session_id=session,
                    ),
                    llm,
                ),
            ]
            result = CommandResult(
                success=not failed,
                result=None if failed else f"answer {turn}",
                error="rate limited" if failed else None,
                error_type="ProviderRateLimitError" if failed else None,
                command_id=command.id,
                command_type="PromptCommand",
                duration_ms=latency + 3,
            )
            if failed:
                traceback = "Traceback ...\nProviderRateLimitError"
                fields = {"command_result": result, "traceback": traceback}
                buf.append(encode_fields(CommandErrorEvent, fields, session_id=session, span=root))
            else:
                buf.append(
                    encode_fields(
                        CommandResultEvent,
                        {"command_result": result},
                        session_id=session,
                        span=root,
                    )
                )
            buf.append(
                encode_fields(
                    TraceEvent,
                    {
                        "name": "PromptCommand",
                        "span_context": root,
                        "span_kind": "CHAIN",
                        "end_time": now + timedelta(milliseconds=latency + 3),
                        "status": "ERROR" if failed else "OK",
                        "status_message": "ProviderRateLimitError: rate limited"
                        if failed
                        else None,
                        "duration_ms": latency + 3,
                        "attributes": {"llmgine.command.type": "PromptCommand"},
                    },
                    session_id=session,
                    span=root,
                )
            )
            # A heterogeneous payload: the same field name with another type.
            empty = MetricEvent(metrics=[], metadata={"turn": str(turn)})
            buf.append(encode_line("event", empty, None))
            out.write(b"".join(buf))
            written += len(buf)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"wrote {write_log(args.path, args.lines):,} lines to {args.path}")


if __name__ == "__main__":
    main()
