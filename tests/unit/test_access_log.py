"""The access log (``clinvk_core.web.access_log``): one JSON line per request, with nothing secret in it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinvk_core.web.access_log import MAX_FIELD_CHARS, AccessLog, request_log


async def noting_app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the body, notes what the chat layer would, answers with the body's length."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request_log(scope).note(model=body.decode(), backend="claude", prompt_tokens=3)
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(record.getMessage()) for record in caplog.records if record.name == "clinvk.access"]


@pytest.fixture
def client(caplog: pytest.LogCaptureFixture) -> TestClient:
    caplog.set_level("INFO", logger="clinvk.access")
    return TestClient(AccessLog(noting_app))


def test_one_line_per_request_with_ids_status_durations_and_fields(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.post("/openai/v1/chat/completions", content=b"claude")
    [line] = lines(caplog)
    assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"])
    assert response.headers["x-request-id"] == line["request_id"]
    assert (line["method"], line["path"], line["status"]) == ("POST", "/openai/v1/chat/completions", 201)
    assert line["duration_ms"] >= line["first_byte_ms"] >= 0
    assert (line["model"], line["backend"], line["prompt_tokens"]) == ("claude", "claude", 3)


def test_no_header_query_or_body_text_reaches_the_line(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    client.post(
        "/openai/v1/chat/completions?api_key=QUERY-SECRET",
        content=b"short",
        headers={"Authorization": "Bearer HEADER-SECRET", "x-api-key": "OTHER-SECRET", "cookie": "c=COOKIE"},
    )
    [record] = [r for r in caplog.records if r.name == "clinvk.access"]
    for secret in ("QUERY-SECRET", "HEADER-SECRET", "OTHER-SECRET", "COOKIE", "api_key"):
        assert secret not in record.getMessage()


@pytest.mark.parametrize("request_id", ["abc-123", "req_fake_1.2:3", "x" * 128])
def test_a_clients_well_formed_request_id_is_kept(
    request_id: str, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get("/", headers={"x-request-id": request_id})
    assert response.headers["x-request-id"] == request_id
    assert lines(caplog)[0]["request_id"] == request_id


@pytest.mark.parametrize(
    "request_id",
    ["x" * 129, "two words", 'a","status":200,"x":"', "caf\u00e9", "a/b", ""],
    ids=["too-long", "space", "json-forgery", "non-ascii", "slash", "empty"],
)
def test_any_other_request_id_is_replaced(
    request_id: str, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get("/", headers={b"x-request-id": request_id.encode()})
    [line] = lines(caplog)
    assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"])
    assert response.headers["x-request-id"] == line["request_id"]


def test_client_chosen_strings_are_clipped(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    client.post("/", content=b"m" * 100_000)  # the "model" noted is the body
    [record] = [r for r in caplog.records if r.name == "clinvk.access"]
    assert json.loads(record.getMessage())["model"] == "m" * MAX_FIELD_CHARS + "..."
    assert len(record.getMessage()) < 1000


def test_a_request_that_never_answered_is_logged_as_499(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="clinvk.access")

    async def failing_app(scope: Any, receive: Any, send: Any) -> None:
        request_log(scope).note(backend="gemini")
        raise RuntimeError("gone")

    with pytest.raises(RuntimeError, match="gone"):
        TestClient(AccessLog(failing_app)).get("/x")
    [line] = lines(caplog)
    assert (line["status"], line["first_byte_ms"], line["backend"]) == (499, None, "gemini")
