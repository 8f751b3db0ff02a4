"""RunResponse: the answer is watched for a disconnect; the run's clean-up after it is never cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.types import Message

from clinvk_core.events import Completed, Event, TextDelta
from clinvk_core.openai.chat import ChatCompletionJSON, open_choices
from clinvk_core.openai.render import ResponseMeta
from clinvk_core.openai.stream import ChatCompletionStream

META = ResponseMeta(id="chatcmpl-test", created=0, model="claude")
SCOPE = {"type": "http", "method": "POST", "path": "/openai/v1/chat/completions", "headers": []}


class Exchange:
    """One HTTP exchange as uvicorn and Mangum present it: a finished response reads as a disconnect."""

    def __init__(self, *, client_leaves_after: float | None = None) -> None:
        self.sent: list[Message] = []
        self._finished = asyncio.Event()
        self._client_leaves_after = client_leaves_after

    async def receive(self) -> Message:
        if self._client_leaves_after is None:
            await self._finished.wait()
        else:
            await asyncio.sleep(self._client_leaves_after)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self._finished.set()


class Run:
    """A stand-in run whose clean-up takes a while and says whether it got to its end."""

    def __init__(self, events: list[Event], *, stall: bool = False) -> None:
        self.events = events
        self.stall = stall
        self.cleaned_up = False
        self.cleanup_cancelled = False

    @asynccontextmanager
    async def open(self) -> AsyncIterator[AsyncIterator[Event]]:
        try:
            yield self._iterate()
        finally:
            try:
                await asyncio.sleep(0.05)  # kill, reap, remove the workspace
                self.cleaned_up = True
            except asyncio.CancelledError:
                self.cleanup_cancelled = True
                raise

    async def _iterate(self) -> AsyncIterator[Event]:
        for event in self.events:
            yield event
        if self.stall:
            await asyncio.sleep(30)


ANSWER: list[Event] = [TextDelta("pong"), Completed(usage=None)]


def test_clean_up_after_a_buffered_answer_runs_to_its_end() -> None:
    run, exchange = Run(ANSWER), Exchange()
    asyncio.run(
        asyncio.wait_for(ChatCompletionJSON(open_choices(run.open, 1), META)(SCOPE, exchange.receive, exchange.send), 5)
    )
    assert b"pong" in exchange.sent[1]["body"]
    assert (run.cleaned_up, run.cleanup_cancelled) == (True, False)


def test_clean_up_after_a_streamed_answer_runs_to_its_end() -> None:
    run, exchange = Run(ANSWER), Exchange()
    response = ChatCompletionStream(open_choices(run.open, 1), META, include_usage=False, keepalive=15)
    asyncio.run(asyncio.wait_for(response(SCOPE, exchange.receive, exchange.send), 5))
    assert exchange.sent[-2]["body"] == b"data: [DONE]\n\n"
    assert (run.cleaned_up, run.cleanup_cancelled) == (True, False)


def test_a_client_that_leaves_mid_stream_stops_the_answer_and_the_run_is_cleaned_up() -> None:
    run, exchange = Run([TextDelta("po")], stall=True), Exchange(client_leaves_after=0.1)
    response = ChatCompletionStream(open_choices(run.open, 1), META, include_usage=False, keepalive=15)
    asyncio.run(asyncio.wait_for(response(SCOPE, exchange.receive, exchange.send), 5))
    assert b"[DONE]" not in b"".join(message.get("body", b"") for message in exchange.sent)
    assert (run.cleaned_up, run.cleanup_cancelled) == (True, False)
