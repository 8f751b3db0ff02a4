"""One model turn as every wire format starts it: images loaded within limits, size-checked, deadline set, its
events logged."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from starlette.requests import Request

from clinvk_core.conversation import Conversation
from clinvk_core.errors import GatewayError, InvalidRequest
from clinvk_core.events import Completed, Event, RunStarted, SessionStarted, TextDelta, ToolCallStarted
from clinvk_core.gateway import Gateway
from clinvk_core.images import ImageLoader
from clinvk_core.routing import Route
from clinvk_core.structured import checked_output
from clinvk_core.transcript import render_prompt
from clinvk_core.web.access_log import RequestLog, request_log
from clinvk_core.web.deadline import request_deadline
from clinvk_core.web.run_response import OpenRun

# Claude and codex take the system prompt as one argv string, which Linux caps at 128 KiB.
MAX_SYSTEM_PROMPT_BYTES = 100_000


def open_turn(
    gateway: Gateway, route: Route, conversation: Conversation, request: Request, *, input_param: str = "messages"
) -> OpenRun:
    """What starts the turn when the response is ready to answer; checked now, so errors are plain 4xx.

    ``input_param`` names the conversation in the wire format's errors (``messages``, ``input``)."""
    check_size(conversation, gateway.settings.max_prompt_chars, input_param)
    deadline = request_deadline(request.scope, dict(request.headers), gateway.settings.timeout_seconds)
    record = request_log(request.scope)

    def rerun(corrected: Conversation) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        return gateway.run(route, corrected, deadline)

    @asynccontextmanager
    async def open_run() -> AsyncIterator[AsyncIterator[Event]]:
        # The first run is entered here, so what is known before the CLI starts keeps its HTTP status.
        async with gateway.run(route, conversation, deadline) as events, AsyncExitStack() as stack:
            if conversation.output is not None:
                checked = checked_output(events, conversation, rerun)
                stack.push_async_callback(checked.aclose)  # it may hold the run of a corrective turn
                events = checked
            logged = _logged(events, record)
            stack.push_async_callback(logged.aclose)
            yield logged

    return open_run


def check_message_count(gateway: Gateway, count: int, param: str, what: str = "messages") -> None:
    """A 400 for a conversation longer than the configured limit, before anything is done with it."""
    if count > gateway.settings.max_messages:
        raise InvalidRequest(f"Too many {what}: {count} (the limit is {gateway.settings.max_messages}).", param=param)


def image_loader(gateway: Gateway) -> ImageLoader:
    """The request's images, loaded within the configured limits (one loader per request: it counts them)."""
    settings = gateway.settings
    return ImageLoader(
        max_bytes=settings.max_image_bytes,
        max_images=settings.max_images,
        policy=settings.image_urls,
        timeout=settings.image_fetch_timeout_seconds,
    )


def check_size(conversation: Conversation, max_chars: int, param: str) -> None:
    system = conversation.system or ""
    total = len(render_prompt(conversation)) + len(system)
    if total > max_chars:
        raise InvalidRequest(
            f"The conversation is too long: {total} characters (the limit is {max_chars}).",
            param=param,
            code="context_length_exceeded",
        )
    if len(system.encode("utf-8")) > MAX_SYSTEM_PROMPT_BYTES:
        raise InvalidRequest(
            f"The system prompt is too long (over {MAX_SYSTEM_PROMPT_BYTES} bytes).",
            param=param,
            code="context_length_exceeded",
        )


async def _logged(events: AsyncIterator[Event], record: RequestLog) -> AsyncGenerator[Event, None]:
    """The events, noting in the request's log line what they say: session, first token, usage, failure."""
    try:
        async for event in events:
            if isinstance(event, RunStarted):
                record.note(warm=event.warm)
            elif isinstance(event, SessionStarted):
                record.note(session_id=event.session_id)
            elif isinstance(event, TextDelta | ToolCallStarted) and "first_token_ms" not in record.fields:
                record.note(first_token_ms=record.elapsed_ms())
            elif isinstance(event, Completed):
                record.note(finish_reason=event.finish_reason)
                if usage := event.usage:
                    record.note(
                        prompt_tokens=usage.prompt_tokens,
                        completion_tokens=usage.completion_tokens,
                        cached_tokens=usage.cached_tokens,
                    )
            yield event
    except GatewayError as error:
        record.note(error=error.code or error.type)
        raise
