"""POST /chat/completions: an OpenAI request in, a chat completion (or an SSE stream) out."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from clinvk_core.errors import GatewayError, InvalidRequest, UpstreamFailed
from clinvk_core.events import Completed, Event, SessionStarted, TextDelta
from clinvk_core.gateway import Gateway
from clinvk_core.openai.errors import error_response
from clinvk_core.openai.prompt import build_conversation
from clinvk_core.openai.render import ResponseMeta, completion
from clinvk_core.openai.run_response import RunResponse
from clinvk_core.openai.schema import ChatCompletion, ChatCompletionRequest
from clinvk_core.openai.stream import ChatCompletionStream
from clinvk_core.web import request_deadline
from clinvk_core.web.access_log import RequestLog, request_log

# Claude and codex take the system prompt as one argv string, which Linux caps at 128 KiB.
MAX_SYSTEM_PROMPT_BYTES = 100_000


async def chat_completion(body: ChatCompletionRequest, request: Request, gateway: Gateway) -> Response:
    record = request_log(request.scope)
    record.note(model=body.model, stream=bool(body.stream))
    _reject_unsupported(body)
    if len(body.messages) > gateway.settings.max_messages:
        raise InvalidRequest(
            f"Too many messages: {len(body.messages)} (the limit is {gateway.settings.max_messages}).",
            param="messages",
        )
    route = gateway.route(body.model)
    record.note(backend=route.backend)
    conversation = build_conversation(body.messages)
    _check_size(conversation.prompt, conversation.system_prompt, gateway.settings.max_prompt_chars)
    deadline = request_deadline(request.scope, dict(request.headers), gateway.settings.timeout_seconds)
    meta = ResponseMeta(id=f"chatcmpl-{secrets.token_hex(12)}", created=int(time.time()), model=body.model)

    @asynccontextmanager
    async def open_run() -> AsyncIterator[AsyncIterator[Event]]:
        async with gateway.run(route, conversation.prompt, conversation.system_prompt, deadline) as events:
            logged = _logged(events, record)
            try:
                yield logged
            finally:
                await logged.aclose()

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return ChatCompletionStream(open_run, meta, include_usage, gateway.settings.keepalive_seconds)
    return ChatCompletionJSON(open_run, meta)


class ChatCompletionJSON(RunResponse):
    """The buffered answer: one ``chat.completion`` object once the CLI ends its turn."""

    async def answer(self, events: AsyncIterator[Event], scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response: Response = JSONResponse((await self._collect(events)).model_dump())
        except GatewayError as error:
            response = error_response(error)
        await response(scope, receive, send)

    async def _collect(self, events: AsyncIterator[Event]) -> ChatCompletion:
        parts: list[str] = []
        async for event in events:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, Completed):
                return completion(self._meta, "".join(parts), event)
        raise UpstreamFailed("The CLI ended without completing the turn.")  # the gateway raises first


async def _logged(events: AsyncIterator[Event], record: RequestLog) -> AsyncGenerator[Event, None]:
    """The events, noting in the request's log line what they say: session, first token, usage, failure."""
    try:
        async for event in events:
            if isinstance(event, SessionStarted):
                record.note(session_id=event.session_id)
            elif isinstance(event, TextDelta) and "first_token_ms" not in record.fields:
                record.note(first_token_ms=record.elapsed_ms())
            elif isinstance(event, Completed) and event.usage:
                usage = event.usage
                record.note(
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    cached_tokens=usage.cached_tokens,
                )
            yield event
    except GatewayError as error:
        record.note(error=error.code or error.type)
        raise


def _check_size(prompt: str, system_prompt: str | None, max_chars: int) -> None:
    total = len(prompt) + len(system_prompt or "")
    if total > max_chars:
        raise InvalidRequest(
            f"The conversation is too long: {total} characters (the limit is {max_chars}).",
            param="messages",
            code="context_length_exceeded",
        )
    if system_prompt and len(system_prompt.encode("utf-8")) > MAX_SYSTEM_PROMPT_BYTES:
        raise InvalidRequest(
            f"The system and developer messages are too long together (over {MAX_SYSTEM_PROMPT_BYTES} bytes).",
            param="messages",
            code="context_length_exceeded",
        )


def _reject_unsupported(body: ChatCompletionRequest) -> None:
    """400 for fields whose meaning clinvk cannot honour and which would silently change the answer."""
    if body.n is not None and body.n != 1:
        raise InvalidRequest("Only n=1 is supported: each request runs the CLI once.", param="n")
    if body.tools or body.functions:
        param = "tools" if body.tools else "functions"
        raise InvalidRequest("Tool calling is not supported yet; send the request without tools.", param=param)
    if body.response_format and body.response_format.get("type", "text") != "text":
        raise InvalidRequest("Only response_format type 'text' is supported.", param="response_format")
