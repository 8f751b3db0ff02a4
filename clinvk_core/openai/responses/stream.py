"""``stream: true``: the typed SSE events of the Responses API, headers at once, deltas as the CLI writes.

``response.created`` and ``response.in_progress`` first, then each output item opened, written and done,
then ``response.completed`` (``response.incomplete`` at the output token limit) once the response is
stored. Keep-alive comments while the CLI is silent. Once the headers are out, a failure is an ``error``
event and ``response.failed``, and the end of the stream.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from starlette.types import Receive, Scope, Send

from clinvk_core.answer import until_completed
from clinvk_core.errors import GatewayError, UpstreamFailed
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
from clinvk_core.web.run_response import (
    KEEPALIVE,
    SSE_HEADERS,
    OpenRun,
    RunResponse,
    named_sse,
    send_body,
    with_keepalive,
)

log = logging.getLogger("clinvk")


class ResponseStream(RunResponse[AsyncIterator[Event]]):
    def __init__(self, open_run: OpenRun, meta: ResponseMeta, keeper: Keeper | None, keepalive: float) -> None:
        super().__init__(open_run, error_response)
        self._meta = meta
        self._keeper = keeper
        self._keepalive = keepalive

    async def answer(self, events: AsyncIterator[Event], scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        builder = OutputBuilder(self._meta.namespaces)
        started = response_object(self._meta, "in_progress", [])
        for kind in ("response.created", "response.in_progress"):
            await send_body(send, named_sse(builder.event(kind, response=started)))
        try:
            await self._relay(events, builder, send)
        except GatewayError as error:
            await self._fail(builder, error, send)
        except Exception as error:  # a bug must still end the stream cleanly, without a traceback
            log.error("stream failed: %s", type(error).__name__)
            await self._fail(builder, GatewayError("Internal error in the gateway."), send)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _relay(self, events: AsyncIterator[Event], builder: OutputBuilder, send: Send) -> None:
        completed: Completed | None = None
        async for event in with_keepalive(until_completed(events), self._keepalive):
            if event is None:
                await send_body(send, KEEPALIVE)
            elif isinstance(event, Completed):
                completed = event  # the last event: the CLI's own exit and clean-up come after the answer
            else:
                for out in builder.feed(event):
                    await send_body(send, named_sse(out))
        if completed is None:
            raise UpstreamFailed("The CLI ended without completing the turn.")
        for done in builder.finish(completed):
            await send_body(send, named_sse(done))
        response = finished_response(self._meta, builder.items, completed)
        if self._keeper is not None:
            response = await self._keeper.keep(response)  # stored before the client can refer to it
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        await send_body(send, named_sse(builder.event(kind, response=response)))

    async def _fail(self, builder: OutputBuilder, error: GatewayError, send: Send) -> None:
        await send_body(send, named_sse(builder.event("error", **error_fields(error))))
        failed = failed_response(self._meta, builder.items, error)
        await send_body(send, named_sse(builder.event("response.failed", response=failed)))
