"""The SSE response for ``stream: true``: headers at once, chunks as the CLI produces them.

Once the headers are out, a failure is one ``data: {"error":...}`` event and the end of the stream.
With ``n`` > 1 the choices' runs stream side by side, each chunk naming its choice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.types import Send

from clinvk_core.answer import Turn, total_usage
from clinvk_core.errors import GatewayError
from clinvk_core.events import (
    Completed,
    Event,
    ReasoningDelta,
    TextDelta,
    ToolCallArguments,
    ToolCallStarted,
)
from clinvk_core.openai.errors import error_response
from clinvk_core.openai.render import (
    DONE,
    ResponseMeta,
    call_id,
    chunk,
    error_event,
    finish_reason,
    usage_chunk,
)
from clinvk_core.web.run_response import KEEPALIVE, StreamedResponse, send_body, with_keepalive

Choices = Sequence[AsyncIterator[Event]]
OpenChoices = Callable[[], AbstractAsyncContextManager[Choices]]


class ChatCompletionStream(StreamedResponse[Choices]):
    def __init__(
        self,
        open_choices: OpenChoices,
        meta: ResponseMeta,
        include_usage: bool,
        keepalive: float,
    ) -> None:
        super().__init__(open_choices, error_response)
        self._meta = meta
        self._include_usage = include_usage
        self._keepalive = keepalive

    async def start(self, choices: Choices, send: Send) -> None:
        for index in range(len(choices)):
            await send_body(send, chunk(self._meta, {"role": "assistant", "content": ""}, index=index))

    async def relay(self, choices: Choices, send: Send) -> None:
        turns = [Turn(events) for events in choices]
        ids: dict[tuple[int, int], str] = {}  # (choice, call index) -> the call's id
        async for item in with_keepalive(_merged(turns), self._keepalive):
            if item is None:
                await send_body(send, KEEPALIVE)
                continue
            index, event = item
            if isinstance(event, Completed):
                # Finish now: the CLI's own exit and clean-up happen after the client has its answer.
                await send_body(send, chunk(self._meta, {}, finish_reason(self._meta, event), index=index))
            elif (delta := self._delta(event, index, ids)) is not None:
                await send_body(send, chunk(self._meta, delta, index=index))
        usage = total_usage([turn.completed.usage for turn in turns])
        if self._include_usage:
            await send_body(send, usage_chunk(self._meta, usage))
        await send_body(send, DONE)

    async def fail(self, error: GatewayError, send: Send) -> None:
        await send_body(send, error_event(error))

    def _delta(self, event: Event, index: int, ids: dict[tuple[int, int], str]) -> dict[str, Any] | None:
        """The chunk delta an event makes, in the request's style (None: nothing to send)."""
        if isinstance(event, TextDelta) and event.text:
            return {"content": event.text}
        if isinstance(event, ReasoningDelta) and self._meta.include_reasoning and event.text:
            return {"reasoning_content": event.text}
        legacy = self._meta.legacy_functions
        if isinstance(event, ToolCallStarted) and not (legacy and event.index):
            if legacy:
                return {"function_call": {"name": event.name, "arguments": ""}}
            ids[index, event.index] = call_id()
            function = {"name": event.name, "arguments": ""}
            return {"tool_calls": [{"index": event.index, "id": ids[index, event.index], "type": "function",
                                    "function": function}]}  # fmt: skip
        if isinstance(event, ToolCallArguments) and event.delta and not (legacy and event.index):
            if legacy:
                return {"function_call": {"arguments": event.delta}}
            return {"tool_calls": [{"index": event.index, "function": {"arguments": event.delta}}]}
        return None


async def _merged(turns: Sequence[Turn]) -> AsyncIterator[tuple[int, Event]]:
    """The events of every choice's turn as they come, tagged with the choice's index."""
    if len(turns) == 1:
        async for event in turns[0]:
            yield 0, event
        return
    queue: asyncio.Queue[tuple[int, Event] | BaseException | None] = asyncio.Queue()

    async def pump(index: int, turn: Turn) -> None:
        try:
            async for event in turn:
                await queue.put((index, event))
            await queue.put(None)
        except Exception as error:  # handed to the reader, which raises it
            await queue.put(error)

    tasks = [asyncio.ensure_future(pump(index, turn)) for index, turn in enumerate(turns)]
    try:
        finished = 0
        while finished < len(turns):
            item = await queue.get()
            if item is None:
                finished += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
