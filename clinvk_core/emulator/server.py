"""The emulator's ASGI app: API Gateway in front of the template's functions.

Buffered functions are invoked like Lambda does: ``handler(event, context)`` with a
REST API proxy event, on a worker thread of their own (one event loop per worker,
as in a Lambda instance). Streaming functions are reached the way the Lambda Web
Adapter reaches them: the request goes to their ASGI app, bytes flow as produced.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from clinvk_core.anthropic.errors import error_response as anthropic_error
from clinvk_core.emulator.lambda_events import LambdaContext, proxy_result, rest_api_event
from clinvk_core.emulator.template import Function, Route
from clinvk_core.errors import GatewayError, MethodNotAllowed, NotFound
from clinvk_core.openai.errors import error_response as openai_error
from clinvk_core.runner import kill_all
from clinvk_core.web import LAMBDA_CONTEXT_HEADER
from clinvk_core.web.access_log import AccessLog

WORKERS_PER_FUNCTION = 4  # concurrent "instances" of each buffered function
ANTHROPIC_PREFIX = "/anthropic/"  # unknown routes and wrong methods under it answer in Anthropic's error shape

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class _Endpoint:
    route: Route
    pattern: re.Pattern[str]
    function: Function
    target: Any  # the Lambda handler (buffered) or the ASGI app (streaming)


def _path_pattern(template: str) -> re.Pattern[str]:
    """/models/{model} -> ^/models/(?P<model>[^/]+)$ ; {proxy+} matches across slashes."""
    parts = re.split(r"(\{[^}]+\})", template)
    regex = ""
    for part in parts:
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            regex += f"(?P<{name[:-1]}>.+)" if name.endswith("+") else f"(?P<{name}>[^/]+)"
        else:
            regex += re.escape(part)
    return re.compile(f"^{regex}$")


def _new_event_loop() -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())


class Emulator:
    """Routes requests to the functions of a template; imports every handler up front (cold start)."""

    def __init__(self, functions: list[Function]) -> None:
        self._endpoints: list[_Endpoint] = []
        self._pools: dict[str, ThreadPoolExecutor] = {}
        for function in functions:
            module = importlib.import_module(function.module)
            target = getattr(module, "app" if function.streaming else function.attribute)
            if not function.streaming:
                self._pools[function.name] = ThreadPoolExecutor(
                    WORKERS_PER_FUNCTION, thread_name_prefix=function.name, initializer=_new_event_loop
                )
            for route in function.routes:
                self._endpoints.append(_Endpoint(route, _path_pattern(route.path), function, target))

    @property
    def routes(self) -> list[Route]:
        return [endpoint.route for endpoint in self._endpoints]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            endpoint, params = self._match(scope["method"], scope["path"])
        except GatewayError as error:  # answered as API Gateway would, and logged like any request
            error_response = anthropic_error if scope["path"].startswith(ANTHROPIC_PREFIX) else openai_error
            await AccessLog(error_response(error))(scope, receive, send)
            return
        if endpoint.function.streaming:
            await self._forward(endpoint, scope, receive, send)
        else:
            await self._invoke(endpoint, params, scope, receive, send)

    def _match(self, method: str, path: str) -> tuple[_Endpoint, dict[str, str]]:
        path_matched = False
        for endpoint in self._endpoints:
            if match := endpoint.pattern.match(path):
                path_matched = True
                if endpoint.route.method in (method, "ANY"):
                    return endpoint, match.groupdict()
        if path_matched:
            raise MethodNotAllowed(f"Method {method} is not allowed on {path}.")
        raise NotFound(f"No route for {method} {path}.")

    async def _forward(self, endpoint: _Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        """As the Lambda Web Adapter does: the same request to the app, plus the Lambda context header."""
        context = LambdaContext(endpoint.function.name, endpoint.function.timeout)
        header = json.dumps({"request_id": context.aws_request_id, "deadline": context.deadline_ms})
        headers = [*scope["headers"], (LAMBDA_CONTEXT_HEADER.encode(), header.encode())]
        app: ASGIApp = endpoint.target
        await app({**scope, "headers": headers}, receive, send)

    async def _invoke(
        self, endpoint: _Endpoint, params: dict[str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        client = scope.get("client") or ("127.0.0.1", 0)
        event = rest_api_event(
            method=scope["method"],
            path=scope["path"],
            resource=endpoint.route.path,
            path_parameters=params,
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            body=bytes(body),
            source_ip=client[0],
        )
        context = LambdaContext(endpoint.function.name, endpoint.function.timeout)
        handler: LambdaHandler = endpoint.target
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._pools[endpoint.function.name], handler, event, context)
        status, headers, payload = proxy_result(result)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Start and stop the streaming functions' apps as uvicorn does behind the Web Adapter (their
        start-up keeps CLIs warm); on shut-down, no CLI outlives the emulator."""
        async with AsyncExitStack() as apps:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    # All at once: each start-up waits (up to CLINVK_WARM_START_SECONDS) for its own pools.
                    lifespans = [app.router.lifespan_context(app) for app in self._streaming_apps()]
                    await asyncio.gather(*(apps.enter_async_context(lifespan) for lifespan in lifespans))
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await apps.aclose()
                    kill_all()
                    for pool in self._pools.values():
                        pool.shutdown(wait=False, cancel_futures=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    def _streaming_apps(self) -> list[Starlette]:
        apps: list[Starlette] = []
        for endpoint in self._endpoints:
            if endpoint.function.streaming and endpoint.target not in apps:
                apps.append(endpoint.target)
        return apps
