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
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, Generic, TypeVar

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from clinvk_core.errors import GatewayError
from clinvk_core.events import Event
from clinvk_core.web.disconnect import cancel_on_disconnect

log = logging.getLogger("clinvk")
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


class BufferedResponse(RunResponse[R]):
    """The buffered answer: one JSON body once the turn ends, or the error it ended with."""

    async def answer(self, events: R, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response: Response = JSONResponse(await self.build(events))
        except GatewayError as error:
            response = self._error_response(error)
        await response(scope, receive, send)

    @abstractmethod
    async def build(self, events: R) -> dict[str, Any]:
        """The answer's JSON body; raises the gateway error the turn failed with."""


class StreamedResponse(RunResponse[R]):
    """The streamed answer: SSE headers at once; after them, a failure is the wire format's error event(s) and the
    end of the stream, and so is a bug (without a traceback: it may carry secrets)."""

    async def answer(self, events: R, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await self.start(events, send)
        try:
            await self.relay(events, send)
        except GatewayError as error:
            await self.fail(error, send)
        except Exception as error:
            log.error("stream failed: %s", type(error).__name__)
            await self.fail(GatewayError("Internal error in the gateway."), send)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @abstractmethod
    async def start(self, events: R, send: Send) -> None:
        """What goes out with the headers, before the CLI answers."""

    @abstractmethod
    async def relay(self, events: R, send: Send) -> None:
        """The answer's events as the CLI produces them, to the end of the stream's answer."""

    @abstractmethod
    async def fail(self, error: GatewayError, send: Send) -> None:
        """The failure as the wire format streams it."""


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
