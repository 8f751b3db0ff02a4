"""POST /responses: a Responses API request in, a response (or its SSE stream) out, stored when asked.

Everything that can be checked is checked before the CLI starts (400s, the unknown model's 404, an
unknown ``previous_response_id``); the response owns the run, as in chat completions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from starlette.responses import Response

from clinvk_core.answer import Turn
from clinvk_core.events import Completed, Event
from clinvk_core.gateway import Gateway
from clinvk_core.openai.errors import error_response
from clinvk_core.openai.responses.items import new_id, parse, printable, stored
from clinvk_core.openai.responses.render import OutputBuilder, ResponseMeta, finished_response
from clinvk_core.openai.responses.schema import ResponseCreateRequest
from clinvk_core.openai.responses.stored import History, Keeper, history
from clinvk_core.openai.responses.stream import ResponseStream
from clinvk_core.openai.responses.translate import Tools, check_supported, offered_tools, to_conversation
from clinvk_core.store import ResponseStore
from clinvk_core.web.access_log import request_log
from clinvk_core.web.auth import caller
from clinvk_core.web.run_response import BufferedResponse, OpenRun
from clinvk_core.web.turn import check_message_count, image_loader, open_turn

SUMMARIES = frozenset({"auto", "concise", "detailed"})
VERBOSITIES = frozenset({"low", "medium", "high"})


async def create_response(
    body: ResponseCreateRequest, request: Request, gateway: Gateway, store: ResponseStore
) -> Response:
    record = request_log(request.scope)
    record.note(model=body.model, stream=bool(body.stream))
    check_supported(body)
    owner = caller(request.scope)
    inputs = parse(body.input, param="input")
    tools = offered_tools(body.tools)
    route = gateway.route(body.model)
    record.note(backend=route.backend)
    earlier = History([], ())
    if body.previous_response_id is not None:
        earlier = await asyncio.to_thread(history, store, body.previous_response_id, owner)
    located = [*earlier.items, *inputs]
    check_message_count(gateway, len(located), "input", "input items (the earlier turns included)")
    conversation = await to_conversation(body, located, tools, image_loader(gateway))
    open_run = open_turn(gateway, route, conversation, request, input_param="input")
    keep = body.store is not False
    meta = ResponseMeta(
        id=new_id("resp"),
        created_at=int(time.time()),
        model=body.model,
        settings=printable(_settings(body, tools, keep)),
        namespaces=tools.namespaces,
    )
    keeper = None
    if keep:
        ttl = gateway.settings.response_ttl_days * 86_400
        keeper = Keeper(store, owner, earlier.ids, [printable(stored(item)) for _, item in inputs], ttl)
    if body.stream:
        return ResponseStream(open_run, meta, keeper, gateway.settings.keepalive_seconds)
    return ResponseJSON(open_run, meta, keeper)


class ResponseJSON(BufferedResponse[AsyncIterator[Event]]):
    """The buffered answer: the response object once the CLI ends its turn (and it is stored)."""

    def __init__(self, open_run: OpenRun, meta: ResponseMeta, keeper: Keeper | None) -> None:
        super().__init__(open_run, error_response)
        self._meta = meta
        self._keeper = keeper

    async def build(self, events: AsyncIterator[Event]) -> dict[str, Any]:
        builder = OutputBuilder(self._meta.namespaces)
        turn = Turn(events)
        async for event in turn:
            if not isinstance(event, Completed):
                builder.feed(event)
        builder.finish(turn.completed)
        answer = finished_response(self._meta, builder.items, turn.completed)
        return await self._keeper.keep(answer) if self._keeper is not None else answer


def _settings(body: ResponseCreateRequest, tools: Tools, store: bool) -> dict[str, Any]:
    """What the response object repeats of its request, in the shapes the Responses API gives them."""
    text_format = (body.text.format if body.text else None) or {"type": "text"}
    if text_format.get("type") == "json_schema":
        text_format = {**text_format, "schema": text_format.get("schema", {"type": "object"})}
    text: dict[str, Any] = {"format": text_format}
    if body.text and body.text.verbosity in VERBOSITIES:
        text["verbosity"] = body.text.verbosity
    summary = body.reasoning.summary if body.reasoning else None
    return {
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls,
        "metadata": body.metadata or {},
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "reasoning": {
            "effort": body.reasoning.effort if body.reasoning else None,
            "summary": summary if summary in SUMMARIES else None,
        },
        "store": store,
        "temperature": body.temperature,
        "text": text,
        "tool_choice": body.tool_choice or "auto",
        "tools": tools.listed,
        "top_p": body.top_p,
        "truncation": "auto" if body.truncation == "auto" else "disabled",
        "user": body.user,
    }
