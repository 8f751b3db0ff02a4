"""POST /v1/messages: an Anthropic request in, a message (or its SSE stream) out; and count_tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, NoReturn

from fastapi import Request
from starlette.responses import Response

from clinvk_core.answer import collect
from clinvk_core.anthropic.errors import CountingUnavailable, error_response
from clinvk_core.anthropic.render import MessageMeta, message, message_id
from clinvk_core.anthropic.schema import CountTokensRequest, MessagesRequest, Thinking
from clinvk_core.anthropic.stream import MessageStream
from clinvk_core.anthropic.translate import to_conversation
from clinvk_core.events import Event
from clinvk_core.gateway import Gateway
from clinvk_core.web.access_log import request_log
from clinvk_core.web.run_response import BufferedResponse, OpenRun
from clinvk_core.web.turn import check_message_count, image_loader, open_turn


async def create_message(body: MessagesRequest, request: Request, gateway: Gateway) -> Response:
    record = request_log(request.scope)
    record.note(model=body.model, stream=bool(body.stream))
    check_message_count(gateway, len(body.messages), "messages")
    route = gateway.route(body.model)
    record.note(backend=route.backend)
    conversation = await to_conversation(body, image_loader(gateway))
    open_run = open_turn(gateway, route, conversation, request)
    meta = MessageMeta(message_id(), body.model, tuple(body.stop_sequences or ()), shows_thinking(body.thinking))
    if body.stream:
        return MessageStream(open_run, meta, gateway.settings.keepalive_seconds)
    return MessageJSON(open_run, meta)


def count_tokens(body: CountTokensRequest, gateway: Gateway) -> NoReturn:
    """A clear 501 for any valid request: a count would need a model run, and clinvk does not estimate."""
    check_message_count(gateway, len(body.messages), "messages")
    gateway.route(body.model)  # an unknown model is a 404, as for a message
    raise CountingUnavailable(
        "Token counting is not available: the CLIs behind this gateway count tokens only by running the model, "
        "and clinvk does not estimate. The usage of a message response has the exact counts."
    )


def shows_thinking(thinking: Thinking | None) -> bool:
    """Thinking blocks go out when the request enabled thinking (and did not ask for it omitted)."""
    return thinking is not None and thinking.type in ("enabled", "adaptive") and thinking.display != "omitted"


class MessageJSON(BufferedResponse[AsyncIterator[Event]]):
    """The buffered answer: one message once the CLI ends its turn."""

    def __init__(self, open_run: OpenRun, meta: MessageMeta) -> None:
        super().__init__(open_run, error_response)
        self._meta = meta

    async def build(self, events: AsyncIterator[Event]) -> dict[str, Any]:
        return message(self._meta, await collect(events)).model_dump()
