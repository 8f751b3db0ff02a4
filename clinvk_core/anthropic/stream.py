"""The SSE response for ``stream: true``, event for event as the ``anthropic`` SDK accumulates it.

``message_start`` goes out with the headers, before the CLI answers; its usage is 0s, because the CLIs
report their counts only at the end. The ``message_delta`` that ends the message carries every count
(input, cache reads, output), and the SDK's accumulated message takes them from there. ``ping`` while the
CLI is silent; once the headers are out, a failure is one ``error`` event and the end of the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from starlette.types import Send

from clinvk_core.answer import Turn
from clinvk_core.anthropic.errors import error_body, error_response
from clinvk_core.anthropic.render import MessageMeta, stop_reason, tool_use_id, usage_of
from clinvk_core.anthropic.schema import MessageOut, Usage
from clinvk_core.anthropic.stops import StopScanner
from clinvk_core.errors import GatewayError
from clinvk_core.events import (
    Completed,
    Event,
    ReasoningDelta,
    TextDelta,
    ToolCallArguments,
    ToolCallDone,
    ToolCallStarted,
)
from clinvk_core.web.run_response import OpenRun, StreamedResponse, named_sse, send_body, with_keepalive

EventData = dict[str, Any]
PING = named_sse({"type": "ping"})
_EMPTY: dict[str, EventData] = {  # a text or thinking block as it starts (see ThinkingBlock for the signature)
    "text": {"type": "text", "text": ""},
    "thinking": {"type": "thinking", "thinking": "", "signature": ""},
}


class MessageStream(StreamedResponse[AsyncIterator[Event]]):
    def __init__(self, open_run: OpenRun, meta: MessageMeta, keepalive: float) -> None:
        super().__init__(open_run, error_response)
        self._meta = meta
        self._keepalive = keepalive

    async def start(self, events: AsyncIterator[Event], send: Send) -> None:
        start = MessageOut(id=self._meta.id, model=self._meta.model, content=[], stop_reason=None,
                           usage=Usage(input_tokens=0, output_tokens=0))  # fmt: skip
        await send_body(send, named_sse({"type": "message_start", "message": start.model_dump()}))

    async def relay(self, events: AsyncIterator[Event], send: Send) -> None:
        blocks = Blocks(self._meta)
        turn = Turn(events)  # its end is the last event: the CLI's exit and clean-up come after the answer
        async with aclosing(with_keepalive(turn, self._keepalive)) as items:
            async for event in items:
                if event is None:
                    await send_body(send, PING)
                elif not isinstance(event, Completed):
                    for data in blocks.feed(event):
                        await send_body(send, named_sse(data))
        for data in blocks.feed(turn.completed):
            await send_body(send, named_sse(data))

    async def fail(self, error: GatewayError, send: Send) -> None:
        await send_body(send, named_sse(error_body(error)))


class Blocks:
    """Events -> the stream's events: content blocks opened, filled and closed in order, then the end."""

    def __init__(self, meta: MessageMeta) -> None:
        self._meta = meta
        self._stops = StopScanner(meta.stop_sequences)
        self._index = -1  # of the latest block started
        self._open: str | None = None  # the type of the block open now
        self._calls: dict[int, int] = {}  # a call's index -> its block's index
        self._streamed: set[int] = set()  # calls whose arguments came in pieces

    def feed(self, event: Event) -> list[EventData]:
        if isinstance(event, Completed):
            return self._end(event)
        if self._stops.matched is not None:
            return []  # the answer stopped at a stop sequence: what the model adds is not part of it
        if isinstance(event, TextDelta):
            return self._text(event.text)
        if isinstance(event, ReasoningDelta) and self._meta.show_thinking and event.text:
            return self._release() + self._delta("thinking", {"type": "thinking_delta", "thinking": event.text})
        if isinstance(event, ToolCallStarted):
            return self._release() + self._start_call(event.index, event.name)
        if isinstance(event, ToolCallArguments) and event.index in self._calls and event.delta:
            self._streamed.add(event.index)
            return [self._arguments(self._calls[event.index], event.delta)]
        if isinstance(event, ToolCallDone):
            return self._end_call(event)
        return []

    def _text(self, text: str) -> list[EventData]:
        kept = self._stops.feed(text)
        out = self._delta("text", {"type": "text_delta", "text": kept}) if kept else []
        return out + self._close() if self._stops.matched is not None else out

    def _release(self) -> list[EventData]:
        """Text held back as the possible start of a stop sequence: it is not one, since other content follows."""
        held = self._stops.flush()
        return self._delta("text", {"type": "text_delta", "text": held}) if held else []

    def _delta(self, kind: str, delta: EventData) -> list[EventData]:
        """A delta of a text or thinking block: the open one, or a new one."""
        out = [] if self._open == kind else self._begin(kind, _EMPTY[kind])
        return [*out, {"type": "content_block_delta", "index": self._index, "delta": delta}]

    def _start_call(self, call: int, name: str) -> list[EventData]:
        out = self._begin("tool_use", {"type": "tool_use", "id": tool_use_id(), "name": name, "input": {}})
        self._calls[call] = self._index
        return out

    def _end_call(self, done: ToolCallDone) -> list[EventData]:
        out = [] if done.index in self._calls else self._release() + self._start_call(done.index, done.name)
        block = self._calls[done.index]
        if done.index not in self._streamed and done.arguments:
            out.append(self._arguments(block, done.arguments))
        return out + self._close() if block == self._index else out

    def _begin(self, kind: str, block: EventData) -> list[EventData]:
        out = self._close()
        self._index += 1
        self._open = kind
        return [*out, {"type": "content_block_start", "index": self._index, "content_block": block}]

    def _close(self) -> list[EventData]:
        if self._open is None:
            return []
        self._open = None
        return [{"type": "content_block_stop", "index": self._index}]

    def _arguments(self, index: int, piece: str) -> EventData:
        delta = {"type": "input_json_delta", "partial_json": piece}
        return {"type": "content_block_delta", "index": index, "delta": delta}

    def _end(self, completed: Completed) -> list[EventData]:
        out = self._release()
        if self._index < 0:  # no content at all: an empty text block, as in the message of a buffered answer
            out += self._begin("text", _EMPTY["text"])
        out += self._close()
        matched = self._stops.matched
        delta = {"stop_reason": stop_reason(completed, matched), "stop_sequence": matched}
        usage = usage_of(completed.usage).model_dump()
        return [*out, {"type": "message_delta", "delta": delta, "usage": usage}, {"type": "message_stop"}]
