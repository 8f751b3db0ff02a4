"""The SSE response for ``stream: true``: headers at once, chunks as the CLI produces them.

Once the headers are out, a failure is one ``data: {"error":...}`` event and the end of the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TypeVar

from starlette.types import Receive, Scope, Send

from clinvk_core.errors import GatewayError, UpstreamFailed
from clinvk_core.events import Completed, Event, TextDelta
from clinvk_core.openai.render import DONE, KEEPALIVE, ResponseMeta, chunk, error_event, usage_chunk
from clinvk_core.openai.run_response import OpenRun, RunResponse

T = TypeVar("T")
log = logging.getLogger("clinvk")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ChatCompletionStream(RunResponse):
    def __init__(self, open_run: OpenRun, meta: ResponseMeta, include_usage: bool, keepalive: float) -> None:
        super().__init__(open_run, meta)
        self._include_usage = include_usage
        self._keepalive = keepalive

    async def answer(self, events: AsyncIterator[Event], scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await _body(send, chunk(self._meta, {"role": "assistant", "content": ""}))
        try:
            await self._relay(events, send)
        except GatewayError as error:
            await _body(send, error_event(error))
        except Exception as error:  # a bug must still end the stream cleanly, without a traceback
            log.error("stream failed: %s", type(error).__name__)
            await _body(send, error_event(GatewayError("Internal error in the gateway.")))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _relay(self, events: AsyncIterator[Event], send: Send) -> None:
        async for event in with_keepalive(events, self._keepalive):
            if event is None:
                await _body(send, KEEPALIVE)
            elif isinstance(event, TextDelta) and event.text:
                await _body(send, chunk(self._meta, {"content": event.text}))
            elif isinstance(event, Completed):
                # Finish now: the CLI's own exit and clean-up happen after the client has its answer.
                await _body(send, chunk(self._meta, {}, event.finish_reason))
                if self._include_usage:
                    await _body(send, usage_chunk(self._meta, event.usage))
                await _body(send, DONE)
                return
        raise UpstreamFailed("The CLI ended without completing the turn.")


async def _body(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def with_keepalive(source: AsyncIterator[T], interval: float) -> AsyncIterator[T | None]:
    """The items of ``source``, and None each time it has been silent for ``interval`` seconds."""
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield None
                continue
            finished, pending = pending, None
            try:
                item = finished.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
