"""The tool bridge: a client's functions, offered to the CLI as the tools of an MCP server.

One loopback endpoint per process (MCP over streamable HTTP, answering in plain JSON), started on
first use in a thread of its own, so it serves runs whatever event loop they live on and costs a
run no process of its own. A run that carries tools opens a :class:`BridgeSession`: a secret path
under which its CLI finds exactly the request's functions, schemas unchanged.

The bridge executes nothing. A ``tools/call`` is reported to its session (the model has ended its
turn with a call of a client tool) and held unanswered until the session closes, by which time the
CLI is gone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.types import Receive, Scope, Send

from clinvk_core.conversation import ToolSpec

SERVER_NAME = "clinvk"  # the MCP server's name, which the CLIs put into the tool names the model sees
PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MAX_BODY_BYTES = 1024 * 1024
_METHOD_NOT_FOUND = -32601
_INVALID_REQUEST = -32600


class BridgeSession:
    """One run's view of the bridge: the URL its CLI connects to, and whether a tool was called."""

    def __init__(self, bridge: ToolBridge, tools: Sequence[ToolSpec]) -> None:
        self.token = secrets.token_urlsafe(24)
        self.url = f"{bridge.base_url}/mcp/{self.token}"
        self.tools = tuple(tools)
        self._loop = asyncio.get_running_loop()
        self._called = asyncio.Event()
        self.released: concurrent.futures.Future[None] = concurrent.futures.Future()

    @property
    def called(self) -> bool:
        return self._called.is_set()

    async def wait_called(self) -> None:
        """Until the CLI calls one of the session's tools."""
        await self._called.wait()

    def report_call(self) -> None:
        """From the bridge's thread: the CLI called a tool."""
        with contextlib.suppress(RuntimeError):  # the run's loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._called.set)

    def close(self) -> None:
        if not self.released.done():
            self.released.set_result(None)


class ToolBridge:
    """The process's MCP endpoint on 127.0.0.1, serving every open session under its own secret path."""

    def __init__(self) -> None:
        self._sessions: dict[str, BridgeSession] = {}
        self._lock = threading.Lock()
        self._port: int | None = None

    @property
    def base_url(self) -> str:
        if self._port is None:
            self._port = self._start()
        return f"http://127.0.0.1:{self._port}"

    @contextlib.asynccontextmanager
    async def session(self, tools: Sequence[ToolSpec]) -> AsyncIterator[BridgeSession]:
        """A session serving ``tools`` for the block; its held calls are released at the end."""
        with self._lock:
            session = BridgeSession(self, tools)
            self._sessions[session.token] = session
        try:
            yield session
        finally:
            with self._lock:
                self._sessions.pop(session.token, None)
            session.close()

    def _find(self, token: str) -> BridgeSession | None:
        with self._lock:
            return self._sessions.get(token)

    def _start(self) -> int:
        import uvicorn  # only a process that serves tools pays for it (the streaming functions have it anyway)

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)  # connections wait in the backlog until the server runs: no need to wait for it
        config = uvicorn.Config(self._app, interface="asgi3", log_level="warning", access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=asyncio.run, args=(server.serve(sockets=[sock]),), name="clinvk-tool-bridge", daemon=True
        )
        thread.start()
        port: int = sock.getsockname()[1]
        return port

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        prefix, _, token = scope["path"].rpartition("/")
        session = self._find(token) if prefix == "/mcp" else None
        if session is None:
            await _respond(send, 404, b"")
            return
        if scope["method"] != "POST":  # no server-initiated stream, no session to delete
            await _respond(send, 405, b"", [(b"allow", b"POST")])
            return
        body = await _read_body(receive)
        try:
            message = json.loads(body)
        except ValueError:
            await _respond_json(send, _error(None, -32700, "Parse error"))
            return
        batch = message if isinstance(message, list) else [message]
        replies = [reply for item in batch if (reply := await _handle(session, item)) is not None]
        if not replies:
            await _respond(send, 202, b"")
        else:
            await _respond_json(send, replies if isinstance(message, list) else replies[0])


async def _handle(session: BridgeSession, message: Any) -> dict[str, Any] | None:
    """The reply to one JSON-RPC message (None for notifications and responses)."""
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return None if isinstance(message, dict) and "id" in message else _error(None, _INVALID_REQUEST, "Bad message")
    if "id" not in message:
        return None  # a notification (initialized, cancelled...)
    method, params = message["method"], message.get("params") or {}
    if method == "initialize":
        asked = params.get("protocolVersion") if isinstance(params, dict) else None
        version = asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[-1]
        return _result(
            message["id"],
            {
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": SERVER_NAME, "version": "1"},
            },
        )
    if method == "tools/list":
        tools = [{"name": t.name, "description": t.description, "inputSchema": t.parameters} for t in session.tools]
        return _result(message["id"], {"tools": tools})
    if method == "tools/call":
        session.report_call()
        await asyncio.wrap_future(session.released)  # held: the client runs the tool, not the bridge
        return _error(message["id"], -32000, "The request ended; the client runs its own tools.")
    if method == "ping":
        return _result(message["id"], {})
    return _error(message["id"], _METHOD_NOT_FOUND, f"Method not found: {method}")


def _result(request_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


async def _read_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_BODY_BYTES or not message.get("more_body"):
            return bytes(body)


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def _respond_json(send: Send, payload: Any) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    await _respond(send, 200, body, [(b"content-type", b"application/json")])
