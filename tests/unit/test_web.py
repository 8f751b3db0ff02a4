"""HTTP plumbing (``clinvk_core.web``): request deadlines, disconnect handling, the body limit."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import Message

from clinvk_core.errors import GatewayError
from clinvk_core.web import (
    LAMBDA_CONTEXT_HEADER,
    LAMBDA_SAFETY_MARGIN_SECONDS,
    BodyLimit,
    cancel_on_disconnect,
    create_app,
    request_deadline,
)


class FakeContext:
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def budget(scope: dict[str, Any], headers: dict[str, str], timeout: float) -> float:
    async def main() -> float:
        before = asyncio.get_running_loop().time()
        return request_deadline(scope, headers, timeout) - before

    return asyncio.run(main())


def test_deadline_is_the_timeout_outside_lambda() -> None:
    assert budget({}, {}, 300) == pytest.approx(300, abs=0.05)


def test_deadline_follows_the_mangum_lambda_context() -> None:
    scope = {"aws.context": FakeContext(20_000)}
    assert budget(scope, {}, 300) == pytest.approx(20 - LAMBDA_SAFETY_MARGIN_SECONDS, abs=0.05)
    assert budget(scope, {}, 5) == pytest.approx(5, abs=0.05)  # the shorter of the two
    assert 0 <= budget({"aws.context": FakeContext(1_000)}, {}, 300) < 0.05  # never in the past


@pytest.mark.parametrize("key", ["deadline", "deadline_ms"])
def test_deadline_follows_the_web_adapter_header(key: str) -> None:
    header = json.dumps({"request_id": "r", key: int(time.time() * 1000) + 60_000})
    assert budget({}, {LAMBDA_CONTEXT_HEADER: header}, 300) == pytest.approx(60 - LAMBDA_SAFETY_MARGIN_SECONDS, abs=0.1)


@pytest.mark.parametrize("header", ["not json", "[]", '{"deadline": "soon"}', '{"request_id": "r"}', "null"])
def test_unreadable_web_adapter_header_falls_back_to_the_timeout(header: str) -> None:
    assert budget({}, {LAMBDA_CONTEXT_HEADER: header}, 42) == pytest.approx(42, abs=0.05)


def test_cancel_on_disconnect_returns_the_result() -> None:
    async def never_disconnects() -> Message:
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    async def work() -> str:
        await asyncio.sleep(0.01)
        return "done"

    async def main() -> str | None:
        return await cancel_on_disconnect(never_disconnects, work)

    assert asyncio.run(asyncio.wait_for(main(), 5)) == "done"


def test_cancel_on_disconnect_cancels_the_work() -> None:
    cancelled: list[bool] = []

    async def disconnects() -> Message:
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    async def work() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "never"

    async def main() -> str | None:
        return await cancel_on_disconnect(disconnects, work)

    assert asyncio.run(asyncio.wait_for(main(), 5)) is None
    assert cancelled == [True]


def test_cancel_on_disconnect_ignores_other_messages_and_propagates_errors() -> None:
    messages = iter([{"type": "http.request", "body": b""}])

    async def receive() -> Message:
        try:
            return next(messages)
        except StopIteration:
            await asyncio.sleep(30)
            raise AssertionError("unreachable") from None

    async def work() -> str:
        await asyncio.sleep(0.05)
        raise GatewayError("boom")

    async def main() -> str | None:
        return await cancel_on_disconnect(receive, work)

    with pytest.raises(GatewayError, match="boom"):
        asyncio.run(asyncio.wait_for(main(), 5))


def test_body_limit_middleware_directly() -> None:
    """BodyLimit on a plain ASGI app: 413 by Content-Length, and while counting a chunked body."""
    received: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        received.append(size)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    client = TestClient(BodyLimit(app, max_bytes=1024))
    assert client.post("/", content=b"x" * 1024).text == "ok"
    declared = client.post("/", content=b"x" * 1025)
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "request_too_large"

    def chunks() -> Any:
        for _ in range(3):
            yield b"x" * 600

    chunked = client.post("/", content=chunks())
    assert chunked.status_code == 413
    assert chunked.json()["error"]["code"] == "request_too_large"
    assert received == [1024]


def test_create_app_has_no_docs_routes() -> None:
    client = TestClient(create_app("t"))
    for path in ("/docs", "/redoc", "/openapi.json"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_a_stray_slash_is_a_404_not_a_redirect() -> None:
    app = create_app("t")

    @app.post("/items")
    def create() -> dict[str, str]:
        return {}

    @app.get("/items/{item_id}")
    def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    client = TestClient(app)
    for path in ("/items/", "/items/%2F", "/items/x/"):  # 307s to /items and /items/x by FastAPI's default
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
