"""Responses that own the CLI run: the answer goes out first, the CLI's clean-up after.

The run (CLI process, workspace) is entered and left inside the response's own ASGI call, so
nothing outlives the request, whatever happens: a client that goes away while the answer is being
sent cancels the answer, and the run's exit kills the CLI's process group. Only the answer is
watched: once it is out, servers report the finished exchange as a disconnect, and the clean-up
that follows (kill, reap, remove the workspace) must run to its end, not be cancelled half-way.
Errors known before the CLI starts (unavailable backend, in-flight limit) get their HTTP status.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from clinvk_core.errors import GatewayError
from clinvk_core.events import Event
from clinvk_core.openai.errors import error_response
from clinvk_core.openai.render import ResponseMeta
from clinvk_core.web import cancel_on_disconnect

OpenRun = Callable[[], AbstractAsyncContextManager[AsyncIterator[Event]]]


class RunResponse(Response, ABC):
    def __init__(self, open_run: OpenRun, meta: ResponseMeta) -> None:
        super().__init__(status_code=200)
        self._open_run = open_run
        self._meta = meta

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with AsyncExitStack() as stack:
            try:
                events = await stack.enter_async_context(self._open_run())
            except GatewayError as error:
                await error_response(error)(scope, receive, send)
                return
            await cancel_on_disconnect(receive, lambda: self.answer(events, scope, receive, send))
        # Leaving the stack kills the CLI's group and removes its workspace: after the answer is out.

    @abstractmethod
    async def answer(self, events: AsyncIterator[Event], scope: Scope, receive: Receive, send: Send) -> None:
        """Send the whole response for ``events``."""
