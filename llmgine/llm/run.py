"""One prompt's run: tool rounds until the model answers, output retries until it validates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from llmgine.errors import ProviderTimeoutError, StructuredOutputError
from llmgine.llm.cache.acceptance import accepting
from llmgine.llm.commands import PromptCommand
from llmgine.llm.conversations.conversation import Conversation
from llmgine.llm.conversations.trimming import ContextWindow
from llmgine.llm.providers.base import Provider
from llmgine.llm.structured import correction, output_schema, parse_output
from llmgine.llm.tool_runner import ToolRunner
from llmgine.llm.types import ChatMessage, Completion, LLMRequest, Usage
from llmgine.messages.commands import CommandResult

__all__ = ["PromptRun", "Sinks"]


class PromptRun:
    """Runs one ``PromptCommand`` through the provider pipeline, as two small state machines.

    :meth:`_tool_rounds` calls the model and runs the tools it asks for until it
    answers without tools (or ``max_tool_rounds`` is reached); :meth:`_output_retries`
    checks that answer against the prompt's ``output_type`` and sends an invalid one
    back with the error. The conversation changes only when the run succeeds.

    Args:
        command: The prompt.
        chain: The provider pipeline (see :func:`llmgine.llm.pipeline.build_pipeline`).
        conversation: The conversation the prompt continues.
        runner: Runs the model's tool calls; it checks the prompt's ``tool_choice``.
        options: Request parameters, the prompt's merged over the engine's.
        max_tool_rounds: Rounds of tool calls before the run stops and says so.
        max_output_retries: Invalid structured answers sent back before the run fails.
        timeout: Seconds the whole run may take, or ``None``.
        sink: Where a streamed answer's text deltas go (``LLMEngine.stream``), if anywhere.
        window: Fits each request into ``max_context_tokens``, if the prompt has a window.
    """

    def __init__(
        self,
        command: PromptCommand,
        chain: Provider,
        conversation: Conversation,
        runner: ToolRunner,
        *,
        options: Mapping[str, Any],
        max_tool_rounds: int,
        max_output_retries: int,
        timeout: float | None,
        sink: asyncio.Queue[str | None] | None,
        window: ContextWindow | None = None,
    ) -> None:
        self.command = command
        self.chain = chain
        self.conversation = conversation
        self.runner = runner
        self.tools, self.tool_choice = runner.offer(command.use_tools, command.tool_choice)
        self.options = dict(options)
        self.max_tool_rounds = max_tool_rounds
        self.max_output_retries = max_output_retries
        self.timeout = timeout
        self.deadline: float | None = None
        self.sink = sink
        self.window = window
        self.schema = output_schema(command.output_type) if command.output_type else None
        self.messages = [ChatMessage(role="user", content=command.prompt)]
        """Kept in the conversation when the run succeeds: user, assistant and tool messages."""
        self.correction: list[ChatMessage] = []
        """An invalid structured answer and the correction sent with it (kept if tools follow)."""
        self.usage = Usage()
        self.model: str | None = None
        self.calls = self.tool_rounds = self.output_retries = self.cached_calls = 0
        self.costs: list[float | None] = []
        """Each call's ``usage.cost_usd``."""

    async def result(self) -> CommandResult:
        """Run the prompt within its timeout; on success, save its messages as one turn.

        The turn is saved after the answer, outside the timeout, in one write: a run
        that fails, times out or is cancelled before leaves the conversation as it was.
        An answer that never validated against ``output_type`` gives a failed result
        whose metadata still holds the tokens and cost its calls spent.

        Raises:
            ProviderTimeoutError: The run took longer than its timeout.
            ContextWindowError: The prompt's own turn does not fit ``max_context_tokens``.
        """
        try:
            answer = await self._answer()
        except StructuredOutputError as exc:
            # The run ended by its own check, after calls that were paid for: say what they spent.
            return CommandResult(
                success=False,
                error=str(exc),
                error_type=type(exc).__name__,
                metadata=self._metadata(),
            )
        if self.command.remember:
            save = self.conversation.add_turn(self.messages)
            if self.conversation.saved_off_loop:
                await asyncio.shield(save)  # a cancel now must not cut the write in two
            else:
                await save  # in memory: nothing in it yields, so nothing can cut it
        return CommandResult(success=True, result=answer, metadata=self._metadata())

    def _metadata(self) -> dict[str, Any]:
        """The result's metadata: the model, its calls, tokens and cost (a failed run's too)."""
        metadata: dict[str, Any] = {
            "model": self.model or self.chain.model,
            "provider": self.chain.name,
            "rounds": self.calls,
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "cost_usd": None if None in self.costs else sum(c or 0.0 for c in self.costs),
            "cached": self.calls > 0 and self.cached_calls == self.calls,
        }
        if self.usage.estimated:
            metadata["usage_estimated"] = True
        if self.command.output_type is not None:
            metadata["output_retries"] = self.output_retries
        return metadata

    async def _answer(self) -> Any:
        if self.timeout is None:
            return await self._output_retries()
        self.deadline = time.monotonic() + self.timeout
        try:
            async with asyncio.timeout(self.timeout) as scope:
                return await self._output_retries()
        except TimeoutError:
            if not scope.expired():
                raise
            raise ProviderTimeoutError(
                f"The prompt took longer than its timeout of {self.timeout:g} s and was stopped; "
                "its conversation is unchanged. Allow more with timeout=... on the prompt or "
                "on the LLMEngine."
            ) from None

    async def _output_retries(self) -> Any:
        """The answer, validated against the prompt's ``output_type`` when it has one.

        An answer that does not validate goes back to the model with the error, up to
        ``max_output_retries`` times; then the prompt fails. Each retry sends every
        invalid answer so far with its error, so no retry repeats the one before
        (which the cache would answer). The cache keeps only answers that validate:
        a prompt that failed asks the model again when it is run again.
        """
        output_type = self.command.output_type
        # Set for a prompt with no output_type too: a prompt a tool sends has its own check.
        with accepting(None if output_type is None else partial(_acceptable, output_type)):
            return await self._checked_answer(output_type)

    async def _checked_answer(self, output_type: type[BaseModel] | None) -> Any:
        while True:
            answer = await self._tool_rounds()
            if isinstance(answer, str):  # the tool round limit: the note is the result
                return answer
            text = answer.content or ""
            message = ChatMessage(role="assistant", content=answer.content)
            parsed = text if output_type is None else parse_output(output_type, text)
            if output_type is None or not isinstance(parsed, str):
                self.messages.append(message)
                return parsed
            if self.output_retries >= self.max_output_retries:
                raise StructuredOutputError(
                    f"The model's answer is not a valid {output_type.__name__} after "
                    f"{self.output_retries + 1} attempts: {parsed}. Its last answer began "
                    f"{text[:120]!r}. Try a clearer prompt, a larger model, or more "
                    "max_output_retries on the LLMEngine."
                )
            self.output_retries += 1
            self.correction += [message, correction(output_type, parsed)]

    async def _tool_rounds(self) -> Completion | str:
        """Call the model and run the tools it asks for, until it answers without tools.

        Returns the answer, or (after ``max_tool_rounds`` rounds) the note that says so.
        """
        while True:
            completion = await self._call()
            if not completion.tool_calls:
                return completion
            self.messages += self.correction  # what the model answered with tools stays
            self.correction = []
            self.messages.append(
                ChatMessage(
                    role="assistant", content=completion.content, tool_calls=completion.tool_calls
                )
            )
            if self.tool_rounds == self.max_tool_rounds:
                return self._stop_tool_rounds(completion)
            self.tool_rounds += 1
            if self.tool_choice not in (None, "auto", "none"):
                # A forced choice is met once; later rounds leave it to the model (the
                # server's default), so the turn can end in an answer.
                self.tool_choice = None
            self.messages += await self.runner.run_all(
                completion.tool_calls, self.command.conversation_id, self.command.id
            )

    def _stop_tool_rounds(self, completion: Completion) -> str:
        note = (
            f"[Stopped after {self.max_tool_rounds} rounds of tool calls: the model still asked "
            f"for {', '.join(c.name for c in completion.tool_calls)}. Raise max_tool_rounds "
            "on the LLMEngine to allow more.]"
        )
        # Every tool call needs an answer, or the next request of this conversation is invalid.
        for call in completion.tool_calls:
            self.messages.append(
                ChatMessage(
                    role="tool",
                    tool_call_id=call.id,
                    name=call.name,
                    content="Not run: the tool round limit was reached.",
                )
            )
        self.messages.append(ChatMessage(role="assistant", content=note))
        return f"{completion.content}\n\n{note}" if completion.content else note

    def _request(self, messages: list[ChatMessage]) -> LLMRequest:
        """The request of a call sending ``messages``, without its timeout."""
        command = self.command
        return LLMRequest(
            model=self.chain.model,
            messages=messages,
            tools=self.tools,
            tool_choice=self.tool_choice,
            temperature=command.temperature,
            max_tokens=command.max_tokens,
            options=self.options,
            output_schema=self.schema,
        )

    def first_request(self) -> LLMRequest | None:
        """The request the run's first call sends (without its timeout), before it runs.

        ``None`` when a context window shapes the request: only fitting it, which
        counts tokens, tells what it sends.
        """
        if self.window is not None:
            return None
        return self._request([*self.conversation.request_messages(), *self.messages])

    def answered_by(self, completion: Completion) -> CommandResult | None:
        """The run's result if ``completion``, as the answer to its first call, ends it.

        For an answer known before the run (the call cache's): ``None`` when the run
        would go on (the answer asks for tools, or does not validate against the
        prompt's ``output_type``). Nothing is sent and the conversation is not changed
        (a prompt answered so starts a conversation of its own and keeps nothing).
        """
        if self.calls or completion.tool_calls:
            return None
        output_type = self.command.output_type
        answer: Any = completion.content or ""
        if output_type is not None:
            answer = parse_output(output_type, answer)
            if isinstance(answer, str):
                return None
        self.calls += 1
        self._account(completion)
        return CommandResult(success=True, result=answer, metadata=self._metadata())

    async def _call(self) -> Completion:
        """One call through the pipeline; a streamed one feeds ``stream()``'s side channel."""
        request = self._request(await self._request_messages())
        if self.deadline is not None:
            # The provider's own timeout ends with the prompt's, so its retries cannot outlast it.
            request.timeout = max(self.deadline - time.monotonic(), 0.001)
        self.calls += 1
        if not self.command.stream:
            completion = await self.chain.complete(request)
        else:
            completion = Completion()
            async for chunk in self.chain.stream(request):
                if chunk.delta and self.sink is not None:
                    self.sink.put_nowait(chunk.delta)
                completion = chunk.completion or completion
        self._account(completion)
        return completion

    def _account(self, completion: Completion) -> None:
        """Add a call's answer to the run's tokens, costs, cached calls and model."""
        self.usage = Usage(
            input_tokens=self.usage.input_tokens + completion.usage.input_tokens,
            output_tokens=self.usage.output_tokens + completion.usage.output_tokens,
            estimated=self.usage.estimated or completion.usage.estimated,
        )
        self.costs.append(completion.usage.cost_usd)
        self.cached_calls += completion.cached
        self.model = completion.model or self.chain.model

    async def _request_messages(self) -> list[ChatMessage]:
        """The conversation and this turn so far, trimmed to the window if there is one."""
        current = [*self.messages, *self.correction]
        conversation = self.conversation
        if self.window is None:
            return [*conversation.request_messages(), *current]
        prompt = conversation.system_prompt
        system = [ChatMessage(role="system", content=prompt)] if prompt else []
        return await self.window.fit(
            system,
            conversation.messages,
            conversation.turns,
            current,
            extras=(self.tools, self.schema),
        )


def _acceptable(output_type: type[BaseModel], completion: Completion) -> bool:
    """Whether the cache may keep ``completion``: it asks for tools, or it validates."""
    if completion.tool_calls:
        return True
    return not isinstance(parse_output(output_type, completion.content), str)


class Sinks:
    """Where streamed text goes for ``LLMEngine.stream``: one queue per prompt streamed."""

    def __init__(self) -> None:
        self._queues: dict[UUID, asyncio.Queue[str | None]] = {}

    def get(self, prompt_id: UUID) -> asyncio.Queue[str | None] | None:
        """The queue of the prompt ``prompt_id``, if someone streams it."""
        return self._queues.get(prompt_id)

    async def relay(
        self, command: PromptCommand, execute: Callable[[PromptCommand], Awaitable[object]]
    ) -> AsyncIterator[str]:
        """Run ``execute(command)`` and yield the text deltas its run puts in the queue.

        Stopping the iteration early cancels the run; ``execute``'s error is raised
        after the last delta.
        """
        sink: asyncio.Queue[str | None] = asyncio.Queue()
        self._queues[command.id] = sink

        async def run() -> object:
            try:
                return await execute(command)
            finally:
                sink.put_nowait(None)

        task = asyncio.ensure_future(run())
        try:
            while (delta := await sink.get()) is not None:
                yield delta
            await task
        finally:
            self._queues.pop(command.id, None)
            if not task.done():
                task.cancel()
