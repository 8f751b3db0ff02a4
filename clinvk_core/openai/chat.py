"""POST /chat/completions: an OpenAI request in, a chat completion (or an SSE stream) out."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from fastapi import Request
from starlette.responses import JSONResponse, Response

from clinvk_core.errors import InvalidRequest, UpstreamFailed
from clinvk_core.events import Completed, Event, TextDelta
from clinvk_core.gateway import Gateway
from clinvk_core.openai.prompt import build_conversation
from clinvk_core.openai.render import ResponseMeta, completion
from clinvk_core.openai.schema import ChatCompletion, ChatCompletionRequest
from clinvk_core.openai.stream import ChatCompletionStream, OpenRun
from clinvk_core.web import cancel_on_disconnect, request_deadline


async def chat_completion(body: ChatCompletionRequest, request: Request, gateway: Gateway) -> Response:
    _reject_unsupported(body)
    route = gateway.route(body.model)
    conversation = build_conversation(body.messages)
    deadline = request_deadline(request.scope, dict(request.headers), gateway.settings.timeout_seconds)
    meta = ResponseMeta(id=f"chatcmpl-{secrets.token_hex(12)}", created=int(time.time()), model=body.model)

    def open_run() -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        return gateway.run(route, conversation.prompt, conversation.system_prompt, deadline)

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return ChatCompletionStream(open_run, meta, include_usage, gateway.settings.keepalive_seconds)
    result = await cancel_on_disconnect(request.receive, lambda: _complete(open_run, meta))
    if result is None:  # the client left; nobody reads this
        return Response(status_code=499)
    return JSONResponse(result.model_dump())


async def _complete(open_run: OpenRun, meta: ResponseMeta) -> ChatCompletion:
    parts: list[str] = []
    completed: Completed | None = None
    async with open_run() as events:
        async for event in events:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, Completed):
                completed = event
                break  # answer now; the CLI's exit and clean-up need not delay it
    if completed is None:  # the gateway raises before this; a guard for new backends
        raise UpstreamFailed("The CLI ended without completing the turn.")
    return completion(meta, "".join(parts), completed)


def _reject_unsupported(body: ChatCompletionRequest) -> None:
    """400 for fields whose meaning clinvk cannot honour and which would silently change the answer."""
    if body.n is not None and body.n != 1:
        raise InvalidRequest("Only n=1 is supported: each request runs the CLI once.", param="n")
    if body.tools or body.functions:
        param = "tools" if body.tools else "functions"
        raise InvalidRequest(
            "Tool calling is not supported yet; send the request without tools.", param=param
        )
    if body.response_format and body.response_format.get("type", "text") != "text":
        raise InvalidRequest("Only response_format type 'text' is supported.", param="response_format")
