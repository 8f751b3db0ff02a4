"""Every sample event in events/ through the Lambda handler of the function whose route it hits.

Three event formats per function: API Gateway REST API (v1 proxy), HTTP API (payload v2) and a
Function URL; Mangum reads all three. Here the CLIs are stand-ins replaying recorded output;
tests/e2e/test_lambda_events_chat.py sends the chat and responses events through the real CLIs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from clinvk_core.config import PROJECT_ROOT
from clinvk_core.emulator.lambda_events import LambdaContext, proxy_result
from clinvk_core.emulator.server import _path_pattern
from clinvk_core.emulator.template import Function, functions, load_template
from clinvk_core.store import StoredResponse

from .coldstart import cold_start
from .conftest import FakeClis, make_fake_clis

EVENTS = PROJECT_ROOT / "events"
EVENT_FILES = sorted(EVENTS.glob("*.json"))
FORMATS = ("rest", "http", "url")


def load(path: Path) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return event


def event_format(event: dict[str, Any]) -> str:
    if event.get("version") == "2.0":
        return "url" if ".lambda-url." in event["requestContext"]["domainName"] else "http"
    return "rest"


def method_and_path(event: dict[str, Any]) -> tuple[str, str]:
    if event.get("version") == "2.0":
        http = event["requestContext"]["http"]
        return http["method"], http["path"]
    return event["httpMethod"], event["path"]


def function_for(event: dict[str, Any], template_functions: list[Function]) -> Function:
    """The template function whose route the event's method and path hit."""
    method, path = method_and_path(event)
    for function in template_functions:
        for route in function.routes:
            if route.method == method and _path_pattern(route.path).match(path):
                return function
    raise AssertionError(f"no function in template.yaml serves {method} {path}")


@pytest.fixture(scope="module")
def template_functions() -> list[Function]:
    return functions(load_template(PROJECT_ROOT / "template.yaml"))


@pytest.fixture(scope="module")
def clis(tmp_path_factory: pytest.TempPathFactory) -> FakeClis:
    fake = make_fake_clis(tmp_path_factory.mktemp("events") / "clis")
    fake.replay()
    return fake


@pytest.fixture(scope="module")
def modules(clis: FakeClis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    settings = {"CLINVK_BIN_DIR": str(clis.bin_dir), "CLINVK_STATE_DIR": str(tmp_path_factory.mktemp("state"))}
    with cold_start(settings) as imported:
        yield imported


def keep_stored_response(event: dict[str, Any], modules: dict[str, ModuleType]) -> None:
    """The stored response that a GET or DELETE event names, there (again) before the event comes."""
    response_id = event["pathParameters"]["response_id"]
    store = modules["handlers.responses"].store
    if store.get(response_id, "") is None:  # no API keys: the owner is ""
        now = int(time.time())
        response = {"id": response_id, "object": "response", "created_at": now, "status": "completed", "output": []}
        item = {"id": "msg_0", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        store.put(StoredResponse(response_id, "", now, now + 3600, (), response, [item]))


def invoke(event: dict[str, Any], function: Function, modules: dict[str, ModuleType]) -> tuple[int, bytes]:
    handler = modules[function.module].handler  # Mangum, whichever way the function is deployed
    status, _, body = proxy_result(handler(event, LambdaContext(function.name, function.timeout)))
    return status, body


def test_every_function_has_an_event_of_every_format(template_functions: list[Function]) -> None:
    covered = {(function_for(load(path), template_functions).name, event_format(load(path))) for path in EVENT_FILES}
    assert covered >= {(function.name, kind) for function in template_functions for kind in FORMATS}


@pytest.mark.parametrize("path", EVENT_FILES, ids=[path.stem for path in EVENT_FILES])
def test_events_are_lambda_events_of_their_format(path: Path) -> None:
    event = load(path)
    if event_format(event) == "rest":
        assert {"resource", "path", "httpMethod", "headers", "requestContext", "body", "isBase64Encoded"} <= set(event)
        assert event["requestContext"]["stage"] == "prod"
        assert event["requestContext"]["path"] == "/prod" + event["path"]
    else:
        assert {"version", "routeKey", "rawPath", "headers", "requestContext", "isBase64Encoded"} <= set(event)
        assert event["rawPath"] == event["requestContext"]["http"]["path"]
    if event.get("body"):
        json.loads(event["body"])  # the request bodies are JSON, as an OpenAI client sends them


@pytest.mark.parametrize("path", EVENT_FILES, ids=[path.stem for path in EVENT_FILES])
def test_every_event_through_its_handler(
    path: Path, template_functions: list[Function], modules: dict[str, ModuleType]
) -> None:
    event = load(path)
    function = function_for(event, template_functions)
    method, request_path = method_and_path(event)
    if request_path.startswith("/openai/v1/responses/"):
        keep_stored_response(event, modules)
    status, body = invoke(event, function, modules)
    assert status == 200, body
    if request_path.startswith("/anthropic/"):
        check_anthropic(event, request_path, body)
    elif request_path == "/health":
        assert json.loads(body)["status"] == "ok"
    elif request_path == "/openai/v1/models":
        assert [model["id"] for model in json.loads(body)["data"]] == ["claude", "codex", "gemini"]
    elif request_path.startswith("/openai/v1/models/"):
        assert json.loads(body)["id"] == request_path.removeprefix("/openai/v1/models/")
    elif request_path.startswith("/openai/v1/responses/"):
        answer = json.loads(body)
        if request_path.endswith("/input_items"):
            assert (answer["object"], answer["first_id"]) == ("list", "msg_0")
        else:
            assert answer["id"] == event["pathParameters"]["response_id"]
            assert answer.get("deleted") is (True if method == "DELETE" else None)
    elif request_path == "/openai/v1/responses":
        request = json.loads(event["body"])
        if request.get("stream"):
            text = body.decode()
            assert text.startswith("event: response.created\n")
            assert "event: response.completed\n" in text
        else:
            response = json.loads(body)
            assert (response["object"], response["status"], response["model"]) == (
                "response",
                "completed",
                request["model"],
            )
            assert response["output"][0]["content"][0]["text"]
    else:
        request = json.loads(event["body"])
        if request.get("stream"):
            text = body.decode()
            assert text.startswith("data: ")
            assert text.endswith("data: [DONE]\n\n")
        else:
            completion = json.loads(body)
            assert completion["object"] == "chat.completion"
            assert completion["model"] == request["model"]
            assert completion["choices"][0]["message"]["content"]


def check_anthropic(event: dict[str, Any], request_path: str, body: bytes) -> None:
    """The answer of an /anthropic event: Anthropic's model list, model, message or message stream."""
    if request_path == "/anthropic/v1/models":
        assert [model["id"] for model in json.loads(body)["data"]] == ["claude", "codex", "gemini"]
    elif request_path.startswith("/anthropic/v1/models/"):
        assert json.loads(body)["id"] == request_path.removeprefix("/anthropic/v1/models/")
    elif json.loads(event["body"]).get("stream"):
        text = body.decode()
        assert text.startswith("event: message_start\n")
        assert text.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')
    else:
        message = json.loads(body)
        assert (message["type"], message["model"]) == ("message", json.loads(event["body"])["model"])
        assert message["content"][0]["text"]


@pytest.mark.parametrize("kind", FORMATS)
def test_a_bad_chat_request_in_any_format_is_a_400_without_running_a_cli(
    kind: str, template_functions: list[Function], modules: dict[str, ModuleType], clis: FakeClis
) -> None:
    event = load(EVENTS / f"chat-completions-{kind}.json")
    event["body"] = json.dumps({"model": "claude", "messages": []})
    clis.reset("claude")  # forgets the run of another test, and the script: put back below
    try:
        status, body = invoke(event, function_for(event, template_functions), modules)
        ran = clis.ran("claude")
    finally:
        clis.replay("claude")
    assert status == 400
    assert json.loads(body)["error"]["param"] == "messages"
    assert not ran
