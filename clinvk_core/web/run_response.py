"""Responses that own the CLI run: the answer goes out first, the CLI's clean-up after.

The run (CLI process, workspace) is entered and left inside the response's own ASGI call, so
nothing outlives the request, whatever happens: a client that goes away while the answer is being
sent cancels the answer, and the run's exit kills the CLI's process group. Only the answer is
watched: once it is out, servers report the finished exchange as a disconnect, and the clean-up
that follows (kill, reap, remove the workspace) must run to its end, not be cancelled half-way.
Errors known before the CLI starts (unavailable backend, in-flight limit) get their HTTP status,
in the wire format's own error shape.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, Generic, TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from clinvk_core.errors import GatewayError
from clinvk_core.events import Event
from clinvk_core.web.disconnect import cancel_on_disconnect

T = TypeVar("T")
R = TypeVar("R")
OpenRun = Callable[[], AbstractAsyncContextManager[AsyncIterator[Event]]]
ErrorResponse = Callable[[GatewayError], Response]
"""A wire format's error: the status, and the body in its own shape."""

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: clients ignore it, proxies and load balancers see traffic


class RunResponse(Response, ABC, Generic[R]):
    """Enters ``open_run`` (what it yields: the events of one run, or of several) and answers from it."""

    def __init__(self, open_run: Callable[[], AbstractAsyncContextManager[R]], error_response: ErrorResponse) -> None:
        super().__init__(status_code=200)
        self._open_run = open_run
        self._error_response = error_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with AsyncExitStack() as stack:
            try:
                events = await stack.enter_async_context(self._open_run())
            except GatewayError as error:
                await self._error_response(error)(scope, receive, send)
                return
            await cancel_on_disconnect(receive, lambda: self.answer(events, scope, receive, send))
        # Leaving the stack kills the CLI's group and removes its workspace: after the answer is out.

    @abstractmethod
    async def answer(self, events: R, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the whole response for ``events``."""


def named_sse(event: dict[str, Any]) -> bytes:
    """One SSE event named by its ``type`` (the Responses API's and Anthropic's framing): ``event:``, then ``data:``."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


async def send_body(send: Send, data: bytes) -> None:
    """One piece of a streamed body (more to come)."""
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def with_keepalive(source: AsyncIterator[T], interval: float) -> AsyncGenerator[T | None, None]:
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
