"""JSON-RPC with a long-lived CLI over its stdin and stdout, one JSON object a line.

Responses go to the call that waits for them; notifications to the session they belong to (one that
arrives before its session subscribes waits for it); requests the CLI makes of us get the dialect's
answer. When the CLI's output ends, every waiting call and session learns it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import OrderedDict
from typing import Any

from clinvk_core.backends.base import Call, RpcDialect, json_object
from clinvk_core.runner import CliProcess

MAX_EARLY_SESSIONS = 64  # sessions whose notifications wait for a subscriber (the oldest are dropped)
MAX_EARLY_MESSAGES = 1000


class RpcClosed(Exception):
    """The CLI's output ended: no answer will come."""


class RpcFailed(Exception):
    """The CLI answered a call with an error."""


Inbox = asyncio.Queue[dict[str, Any] | None]  # None: the connection closed


class RpcConnection:
    def __init__(self, cli: CliProcess, dialect: RpcDialect) -> None:
        self.cli = cli
        self._dialect = dialect
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._inboxes: dict[str, Inbox] = {}
        self._early: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._reader = asyncio.create_task(self._read())

    @property
    def closed(self) -> bool:
        return self._closed

    async def handshake(self) -> None:
        for call in self._dialect.handshake:
            await self.call(call)

    async def call(self, call: Call) -> Any:
        """The result of ``call`` (None for a notification, which nothing answers); raises RpcFailed for an
        error answer, RpcClosed when none can come."""
        if call.notify:
            await self._write({"method": call.method, "params": call.params})
            return None
        if self.closed:
            raise RpcClosed
        request_id = next(self._ids)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        try:
            await self._write({"id": request_id, "method": call.method, "params": call.params})
            return await answer
        finally:
            self._pending.pop(request_id, None)

    def subscribe(self, key: str) -> Inbox:
        """The session's notifications, those that came before included; None once the connection closes."""
        inbox: Inbox = asyncio.Queue()
        for message in self._early.pop(key, []):
            inbox.put_nowait(message)
        if self.closed:
            inbox.put_nowait(None)
        self._inboxes[key] = inbox
        return inbox

    def unsubscribe(self, key: str) -> None:
        self._inboxes.pop(key, None)

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        self._closed = True
        self._fail_all()

    async def _write(self, message: dict[str, Any]) -> None:
        if self._dialect.jsonrpc:
            message = {"jsonrpc": "2.0", **message}
        line = json.dumps(message, ensure_ascii=False) + "\n"
        async with self._write_lock:
            try:
                await self.cli.write(line.encode("utf-8", "replace"))
            except (BrokenPipeError, ConnectionResetError, RuntimeError):
                raise RpcClosed from None

    async def _read(self) -> None:
        try:
            async for line in self.cli.lines():
                if (message := json_object(line)) is not None:  # else a stray line
                    await self._dispatch(message)
        finally:
            self._closed = True
            self._fail_all()

    async def _dispatch(self, message: dict[str, Any]) -> None:
        if "method" not in message:
            answer = self._pending.get(message.get("id"))  # type: ignore[arg-type]
            if answer is not None and not answer.done():
                if "error" in message:
                    error = message["error"]
                    answer.set_exception(RpcFailed(error.get("message") if isinstance(error, dict) else error))
                else:
                    answer.set_result(message.get("result"))
            return
        if "id" in message:  # the CLI asks something of us
            with contextlib.suppress(RpcClosed):
                await self._write({"id": message["id"], "result": self._dialect.answer(message)})
            return
        key = self._dialect.session_of(message)
        if key is None:
            return
        if (inbox := self._inboxes.get(key)) is not None:
            inbox.put_nowait(message)
            return
        early = self._early.setdefault(key, [])
        if len(early) < MAX_EARLY_MESSAGES:
            early.append(message)
        while len(self._early) > MAX_EARLY_SESSIONS:
            self._early.popitem(last=False)

    def _fail_all(self) -> None:
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(RpcClosed())
        for inbox in self._inboxes.values():
            inbox.put_nowait(None)
