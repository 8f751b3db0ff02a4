"""One structured JSON log line per request: who asked what, how it ended, how long it took.

Never the prompt, the answer or a key: only ids, names, statuses, durations and token counts.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("clinvk.access")
REQUEST_ID_HEADER = b"x-request-id"
# A client's own request id is kept only when it looks like one: it goes into every log line and back out.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_FIELD_CHARS = 200  # client-chosen strings (the model name) are cut: one line stays one short line


class RequestLog:
    """Fields the layers below add to the request's log line (model, backend, tokens, error code)."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.started = time.monotonic()
        self.fields: dict[str, Any] = {}

    def note(self, **fields: Any) -> None:
        self.fields.update(fields)

    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 1)


def request_log(scope: Scope) -> RequestLog:
    """The request's log record (a detached one when the app runs without AccessLog)."""
    record = scope.get("state", {}).get("request_log")
    return record if isinstance(record, RequestLog) else RequestLog("-")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(REQUEST_ID_HEADER, b"").decode("latin-1")
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        record = RequestLog(request_id)
        scope.setdefault("state", {})["request_log"] = record
        status = 0
        first_byte: float | None = None

        async def send_logged(message: Message) -> None:
            nonlocal status, first_byte
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())],
                }
            elif message["type"] == "http.response.body" and first_byte is None:
                first_byte = record.elapsed_ms()
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            line = {
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": status or 499,  # no response started: the client went away first
                "duration_ms": record.elapsed_ms(),
                "first_byte_ms": first_byte,
                **{key: _clip(value) for key, value in record.fields.items()},
            }
            log.info(json.dumps(line, separators=(",", ":")))


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + "..."
    return value
