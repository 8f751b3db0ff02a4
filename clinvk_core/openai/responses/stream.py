"""``stream: true``: the typed SSE events of the Responses API, headers at once, deltas as the CLI writes.

``response.created`` and ``response.in_progress`` first, then each output item opened, written and done,
then ``response.completed`` (``response.incomplete`` at the output token limit) once the response is
stored. Keep-alive comments while the CLI is silent. Once the headers are out, a failure is an ``error``
event and ``response.failed``, and the end of the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.types import Send

from clinvk_core.answer import Turn
from clinvk_core.errors import GatewayError
from clinvk_core.events import Completed, Event
from clinvk_core.openai.errors import error_response
from clinvk_core.openai.responses.render import (
    OutputBuilder,
    ResponseMeta,
    error_fields,
    failed_response,
    finished_response,
    response_object,
)
from clinvk_core.openai.responses.stored import Keeper
from clinvk_core.web.run_response import KEEPALIVE, OpenRun, StreamedResponse, named_sse, send_body, with_keepalive


class ResponseStream(StreamedResponse[AsyncIterator[Event]]):
    def __init__(self, open_run: OpenRun, meta: ResponseMeta, keeper: Keeper | None, keepalive: float) -> None:
        super().__init__(open_run, error_response)
        self._meta = meta
        self._keeper = keeper
        self._keepalive = keepalive
        self._builder = OutputBuilder(meta.namespaces)

    async def start(self, events: AsyncIterator[Event], send: Send) -> None:
        started = response_object(self._meta, "in_progress", [])
        for kind in ("response.created", "response.in_progress"):
            await send_body(send, named_sse(self._builder.event(kind, response=started)))

    async def relay(self, events: AsyncIterator[Event], send: Send) -> None:
        turn = Turn(events)  # its end is the last event: the CLI's exit and clean-up come after the answer
        async for event in with_keepalive(turn, self._keepalive):
            if event is None:
                await send_body(send, KEEPALIVE)
            elif not isinstance(event, Completed):
                for out in self._builder.feed(event):
                    await send_body(send, named_sse(out))
        completed = turn.completed
        for done in self._builder.finish(completed):
            await send_body(send, named_sse(done))
        response = finished_response(self._meta, self._builder.items, completed)
        if self._keeper is not None:
            response = await self._keeper.keep(response)  # stored before the client can refer to it
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        await send_body(send, named_sse(self._builder.event(kind, response=response)))

    async def fail(self, error: GatewayError, send: Send) -> None:
        await send_body(send, named_sse(self._builder.event("error", **error_fields(error))))
        failed = failed_response(self._meta, self._builder.items, error)
        await send_body(send, named_sse(self._builder.event("response.failed", response=failed)))
