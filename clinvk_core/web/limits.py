"""The request body limit, enforced before the app sees the body."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinvk_core.errors import RequestTooLarge
from clinvk_core.openai.errors import error_response as openai_error
from clinvk_core.web.run_response import ErrorResponse


class BodyLimit:
    """413 for a body over the limit, by its Content-Length or by counting a chunked one.

    The body is read here, at most ``max_bytes`` of it, and replayed to the app whole;
    after it, ``receive`` passes through (the app still learns of a disconnect).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, error_response: ErrorResponse = openai_error) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.error_response = error_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending its body
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = RequestTooLarge(f"The request body is larger than the limit of {self.max_bytes} bytes.")
        await self.error_response(error)(scope, receive, send)
