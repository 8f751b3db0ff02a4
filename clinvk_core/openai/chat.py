"""POST /chat/completions: an OpenAI request in, a chat completion (or an SSE stream) out."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import Request
from starlette.responses import Response

from clinvk_core.answer import collect
from clinvk_core.errors import InvalidRequest
from clinvk_core.events import Event
from clinvk_core.gateway import Gateway
from clinvk_core.openai.errors import error_response
from clinvk_core.openai.render import ResponseMeta, completion
from clinvk_core.openai.schema import ChatCompletionRequest
from clinvk_core.openai.stream import ChatCompletionStream, Choices, OpenChoices
from clinvk_core.openai.translate import to_conversation
from clinvk_core.web.access_log import request_log
from clinvk_core.web.run_response import BufferedResponse, OpenRun
from clinvk_core.web.turn import check_message_count, image_loader, open_turn

MAX_CHOICES = 8  # n: each choice is a CLI run of its own


async def chat_completion(body: ChatCompletionRequest, request: Request, gateway: Gateway) -> Response:
    record = request_log(request.scope)
    record.note(model=body.model, stream=bool(body.stream))
    _reject_unsupported(body)
    check_message_count(gateway, len(body.messages), "messages")
    route = gateway.route(body.model)
    record.note(backend=route.backend)
    conversation = await to_conversation(body, image_loader(gateway))
    open_run = open_turn(gateway, route, conversation, request)
    meta = ResponseMeta(
        id=f"chatcmpl-{secrets.token_hex(12)}",
        created=int(time.time()),
        model=body.model,
        legacy_functions=bool(body.functions) and not body.tools,
        include_reasoning=body.include_reasoning is True,
    )
    choices = open_choices(open_run, body.n or 1)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return ChatCompletionStream(choices, meta, include_usage, gateway.settings.keepalive_seconds)
    return ChatCompletionJSON(choices, meta)


def open_choices(open_run: OpenRun, n: int) -> OpenChoices:
    """Opens ``n`` runs of the same turn, one per choice (each counts against the in-flight limit)."""

    @asynccontextmanager
    async def open_all() -> AsyncIterator[Sequence[AsyncIterator[Event]]]:
        async with AsyncExitStack() as stack:
            yield [await stack.enter_async_context(open_run()) for _ in range(n)]

    return open_all


class ChatCompletionJSON(BufferedResponse[Choices]):
    """The buffered answer: one ``chat.completion`` object once every choice's CLI ends its turn."""

    def __init__(self, open_choices: OpenChoices, meta: ResponseMeta) -> None:
        super().__init__(open_choices, error_response)
        self._meta = meta

    async def build(self, events: Choices) -> dict[str, Any]:
        answers = await asyncio.gather(*(collect(choice) for choice in events))
        return completion(self._meta, list(answers)).model_dump()


def _reject_unsupported(body: ChatCompletionRequest) -> None:
    """400 for fields whose meaning clinvk cannot honour and which would silently change the answer."""
    if body.n is not None and not 1 <= body.n <= MAX_CHOICES:
        raise InvalidRequest(f"'n' must be between 1 and {MAX_CHOICES}: each choice is one run of the CLI.", param="n")
    if body.logprobs or body.top_logprobs:
        raise InvalidRequest(
            "logprobs are not available: none of the CLIs reports token log probabilities.",
            param="logprobs" if body.logprobs else "top_logprobs",
        )
