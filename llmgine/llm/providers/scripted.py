"""The scripted provider: replies given up front, for tests and tutorials."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from llmgine.errors import ProviderExhaustedError
from llmgine.llm.providers.base import Provider, count_tokens
from llmgine.llm.types import Completion, LLMRequest, ToolCall, Usage

__all__ = ["ScriptedProvider"]

Reply = str | Completion | BaseException


class ScriptedProvider(Provider):
    """Answers each call with the next reply of its script.

    A reply is text, a :class:`Completion` (e.g. from :meth:`call` for tool calls),
    or an exception to raise. Every request is kept in ``requests``.

    Example:
        >>> provider = ScriptedProvider([ScriptedProvider.call("add", a=1, b=2), "It is 3."])
    """

    name = "scripted"
    cacheable = False  # the answer is the script's next reply, not a function of the request

    def __init__(self, replies: Iterable[Reply] = (), *, model: str = "scripted") -> None:
        super().__init__(model)
        self.replies: deque[Reply] = deque(replies)
        self.requests: list[LLMRequest] = []
        self._replied = 0

    @staticmethod
    def call(
        name: str,
        arguments: Mapping[str, Any] | None = None,
        /,
        *,
        call_id: str | None = None,
        **keyword_arguments: Any,
    ) -> Completion:
        """A reply that calls the tool ``name``.

        Give the tool's arguments as keywords (``call("add", a=1, b=2)``) or as a
        mapping, which also holds arguments named like this method's own
        (``call("rename", {"name": "x", "call_id": "y"}, call_id="c1")``).

        Args:
            name: The tool to call.
            arguments: The tool's arguments as a mapping; keywords are added to it.
            call_id: The call's id (default ``call_<name>``).
            **keyword_arguments: The tool's arguments.
        """
        merged = {**(arguments or {}), **keyword_arguments}
        call = ToolCall(id=call_id or f"call_{name}", name=name, arguments=json.dumps(merged))
        return Completion(tool_calls=[call], finish_reason="tool_calls")

    def add(self, *replies: Reply) -> None:
        """Append replies to the script."""
        self.replies.extend(replies)

    @staticmethod
    def _exhausted(answered: int) -> str:
        how = (
            "give it replies with engine.provider.add('a reply', ...) (in a notebook: "
            "get_engine().provider.add(...)) or ScriptedProvider([...])"
        )
        if answered == 0:
            return (
                f"The scripted provider answers only with the replies it is given, and it has "
                f"none: {how}; or choose another model, such as LLMGINE_MODEL=offline."
            )
        calls = "call" if answered == 1 else "calls"
        return f"The scripted provider has no replies left after {answered} {calls}: {how}."

    async def complete(self, request: LLMRequest) -> Completion:
        """Return the next scripted reply (or raise it)."""
        self.requests.append(request)
        if not self.replies:
            raise ProviderExhaustedError(self._exhausted(self._replied))
        reply = self.replies.popleft()
        self._replied += 1
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, str):
            reply = Completion(content=reply, finish_reason="stop")
        usage = reply.usage
        if usage == Usage():
            usage = Usage(
                input_tokens=sum(count_tokens(m.content) for m in request.messages),
                output_tokens=count_tokens(reply.content),
            )
        # A whole answer says why it ended, as a server's does (a Completion given may not).
        finish_reason = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        return reply.model_copy(
            update={
                "usage": usage,
                "model": reply.model or request.model,
                "finish_reason": finish_reason,
            }
        )
