"""HTTP plumbing shared by every handler: the app factory, body limit, deadlines, disconnects."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinvk_core.config import get_settings
from clinvk_core.errors import RequestTooLarge
from clinvk_core.openai.errors import error_response, install_error_handlers

T = TypeVar("T")

# Stop the CLI this long before Lambda would kill the function, to answer with a clean 504.
LAMBDA_SAFETY_MARGIN_SECONDS = 3.0
LAMBDA_CONTEXT_HEADER = "x-amzn-lambda-context"  # set by the Lambda Web Adapter


def create_app(title: str) -> FastAPI:
    """A FastAPI app with OpenAI-shaped errors and the request size limit."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=get_settings().max_request_bytes)
    return app


class BodyLimit:
    """413 for bodies over the limit, by Content-Length or by counting a chunked body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = RequestTooLarge(f"The request body is larger than the limit of {self.max_bytes} bytes.")
        await error_response(error)(scope, receive, send)


class _TooLarge(Exception):
    pass


def request_deadline(scope: Scope, headers: dict[str, str], timeout: float) -> float:
    """The request's deadline in event-loop time: the timeout, or less when Lambda has less left."""
    budget = timeout
    remaining_ms = _lambda_remaining_ms(scope, headers)
    if remaining_ms is not None:
        budget = min(budget, remaining_ms / 1000 - LAMBDA_SAFETY_MARGIN_SECONDS)
    return asyncio.get_running_loop().time() + max(budget, 0.0)


def _lambda_remaining_ms(scope: Scope, headers: dict[str, str]) -> float | None:
    context = scope.get("aws.context")  # Mangum puts the Lambda context here
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        return float(context.get_remaining_time_in_millis())
    raw = headers.get(LAMBDA_CONTEXT_HEADER)
    if raw:
        try:
            data = json.loads(raw)
            deadline = data.get("deadline_ms", data.get("deadline"))
            return float(deadline) - time.time() * 1000
        except (ValueError, TypeError, AttributeError):
            return None
    return None


async def cancel_on_disconnect(receive: Receive, work: Callable[[], Awaitable[T]]) -> T | None:
    """Run ``work``, cancelled as soon as the client goes away (then None); its errors propagate as is.

    Call it once the request body has been read: from then on, the only message
    ``receive`` can bring is the disconnect.
    """
    task = asyncio.ensure_future(work())
    watcher = asyncio.ensure_future(_until_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            pending.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
    return None if task.cancelled() else task.result()


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
