"""The SAM template as the emulator reads it, the Lambda event/context shims, and the emulator's routing."""

from __future__ import annotations

import base64
import importlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinvk_core.config import PROJECT_ROOT
from clinvk_core.emulator.lambda_events import LambdaContext, proxy_result, rest_api_event
from clinvk_core.emulator.server import Emulator, _path_pattern
from clinvk_core.emulator.template import Function, Route, functions, handler_of, load_template
from clinvk_core.errors import MethodNotAllowed, NotFound

from .conftest import Handlers

Capture = Callable[[str], list[str]]
TEMPLATE = PROJECT_ROOT / "template.yaml"


@pytest.fixture(scope="module")
def template_functions() -> list[Function]:
    return functions(load_template(TEMPLATE))


def by_module(found: list[Function], module: str) -> Function:
    [function] = [f for f in found if f.module == module]
    return function


@pytest.fixture
def emulator(handlers: Handlers, template_functions: list[Function]) -> Iterator[TestClient]:
    """The emulator over the real template, the handlers already imported (cold start) by ``handlers``."""
    with TestClient(Emulator(template_functions), raise_server_exceptions=False) as client:
        yield client


# --- template.yaml ------------------------------------------------------------------------------------


def test_template_declares_the_contract_routes(template_functions: list[Function]) -> None:
    routes = {route for function in template_functions for route in function.routes}
    assert routes == {
        Route("GET", "/openai/v1/models"),
        Route("GET", "/openai/v1/models/{model+}"),  # greedy: BACKEND/MODEL ids hold a slash
        Route("GET", "/health"),
        Route("POST", "/openai/v1/chat/completions"),
        Route("POST", "/openai/v1/responses"),
        Route("GET", "/openai/v1/responses/{response_id}"),
        Route("DELETE", "/openai/v1/responses/{response_id}"),
        Route("GET", "/openai/v1/responses/{response_id}/input_items"),
        Route("POST", "/anthropic/v1/messages"),
        Route("POST", "/anthropic/v1/messages/count_tokens"),
        Route("GET", "/anthropic/v1/models"),
        Route("GET", "/anthropic/v1/models/{model+}"),
    }


def test_template_functions(template_functions: list[Function]) -> None:
    models = by_module(template_functions, "handlers.models")
    health = by_module(template_functions, "handlers.health")
    assert (models.attribute, models.streaming) == ("handler", False)
    assert (health.attribute, health.streaming) == ("handler", False)
    for module in ("handlers.chat_completions", "handlers.responses"):
        runs_a_cli = by_module(template_functions, module)
        assert runs_a_cli.streaming  # behind the Lambda Web Adapter, response streaming
        assert runs_a_cli.attribute == "app"
        assert runs_a_cli.timeout > models.timeout  # a CLI turn needs far more than a models listing
    assert all(function.timeout > 0 for function in template_functions)


def test_every_handler_module_imports_and_exposes_handler_and_app(
    handlers: Handlers, template_functions: list[Function]
) -> None:
    for function in template_functions:
        module = importlib.import_module(function.module)
        assert callable(module.handler), function.module
        assert callable(module.app), function.module
        assert callable(getattr(module, function.attribute))


def test_handler_of() -> None:
    assert handler_of({"Handler": "handlers.models.handler"}) == ("handlers.models", "handler")
    image = {"ImageConfig": {"Command": ["handlers.health.handler"]}}
    assert handler_of(image) == ("handlers.health", "handler")
    uvicorn = {
        "ImageConfig": {
            "EntryPoint": ["python", "-m", "uvicorn"],
            "Command": ["handlers.chat_completions:app", "--port", "8080"],
        }
    }
    assert handler_of(uvicorn) == ("handlers.chat_completions", "app")
    with pytest.raises(ValueError, match="no handlers"):
        handler_of({"ImageConfig": {"Command": ["app.main"]}})


def test_load_template_reads_cloudformation_short_tags(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        "Resources:\n"
        "  F:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties:\n"
        "      Handler: handlers.models.handler\n"
        "      Role: !GetAtt [R, Arn]\n"
        "      Events:\n"
        "        E:\n"
        "          Type: Api\n"
        "          Properties: {RestApiId: !Ref Api, Path: '/x/{id}', Method: get}\n"
        "  Other: {Type: AWS::S3::Bucket, Properties: {BucketName: !Sub '${AWS::StackName}-b'}}\n",
        encoding="utf-8",
    )
    data = load_template(path)
    assert data["Resources"]["F"]["Properties"]["Role"] == {"Fn::GetAtt": ["R", "Arn"]}
    [function] = functions(data)
    assert function == Function(
        name="F",
        module="handlers.models",
        attribute="handler",
        timeout=3.0,  # Lambda's default when neither the function nor Globals set one
        streaming=False,
        routes=(Route("GET", "/x/{id}"),),
    )


def test_load_template_rejects_a_non_mapping(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a CloudFormation template"):
        load_template(path)


@pytest.mark.parametrize(
    ("template", "path", "params"),
    [
        ("/openai/v1/models/{model}", "/openai/v1/models/claude-sonnet-4-5", {"model": "claude-sonnet-4-5"}),
        ("/openai/v1/models/{model}", "/openai/v1/models/a/b", None),
        ("/openai/v1/models", "/openai/v1/models/", None),
        ("/files/{proxy+}", "/files/a/b/c.txt", {"proxy": "a/b/c.txt"}),
        ("/a.b", "/aXb", None),
    ],
)
def test_path_patterns(template: str, path: str, params: dict[str, str] | None) -> None:
    match = _path_pattern(template).match(path)
    assert (match.groupdict() if match else None) == params


# --- the emulator -------------------------------------------------------------------------------------


def test_emulator_match(handlers: Handlers, template_functions: list[Function]) -> None:
    emulator = Emulator(template_functions)
    endpoint, params = emulator._match("GET", "/openai/v1/models/gpt-5.5")
    assert endpoint.route == Route("GET", "/openai/v1/models/{model+}")
    assert params == {"model": "gpt-5.5"}
    assert emulator._match("GET", "/openai/v1/models/codex/gpt-5.5")[1] == {"model": "codex/gpt-5.5"}
    endpoint, params = emulator._match("POST", "/openai/v1/chat/completions")
    assert endpoint.function.streaming
    assert params == {}
    with pytest.raises(MethodNotAllowed):
        emulator._match("DELETE", "/health")
    with pytest.raises(NotFound):
        emulator._match("GET", "/openai/v1/engines")
    assert set(emulator.routes) == {route for f in template_functions for route in f.routes}


def test_emulator_serves_buffered_functions_through_their_lambda_handler(emulator: TestClient) -> None:
    listing = emulator.get("/openai/v1/models")
    assert listing.status_code == 200
    assert [m["id"] for m in listing.json()["data"]] == ["claude", "codex", "gemini"]
    one = emulator.get("/openai/v1/models/claude-sonnet-4-5")
    assert one.status_code == 200
    assert one.json()["id"] == "claude-sonnet-4-5"
    missing = emulator.get("/openai/v1/models/llama-3")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    health = emulator.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nope", 404, "not_found"),
        ("GET", "/openai/v1/chat/completions", 405, "method_not_allowed"),
        ("POST", "/openai/v1/models", 405, "method_not_allowed"),
        ("GET", "/openai/v1/engines/a", 404, "not_found"),
    ],
)
def test_emulator_errors_are_openai_shaped(
    emulator: TestClient, method: str, path: str, status: int, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="clinvk.access"):
        response = emulator.request(method, path)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    [line] = [json.loads(record.getMessage()) for record in caplog.records if record.name == "clinvk.access"]
    assert (line["method"], line["path"], line["status"]) == (method, path, status)  # logged like any request


def test_emulator_forwards_the_streaming_function(emulator: TestClient, handlers: Handlers, capture: Capture) -> None:
    bad = emulator.post("/openai/v1/chat/completions", json={"model": "claude"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "messages"

    handlers.clis.script("claude", stdout="".join(capture("claude-stream-json-partial.txt")))
    request = {"model": "claude", "messages": [{"role": "user", "content": "say pong"}], "stream": True}
    with emulator.stream("POST", "/openai/v1/chat/completions", json=request) as response:
        text = response.read().decode()
    assert response.headers["content-type"].startswith("text/event-stream")
    assert text.endswith("data: [DONE]\n\n")
    assert '"content":"pong "' in text


# --- Lambda events and context ------------------------------------------------------------------------


def test_rest_api_event_shape() -> None:
    event = rest_api_event(
        method="POST",
        path="/openai/v1/models/claude",
        resource="/openai/v1/models/{model}",
        path_parameters={"model": "claude"},
        query_string="a=1&a=2&b=",
        headers=[("host", "localhost"), ("x-multi", "one"), ("x-multi", "two"), ("user-agent", "pytest")],
        body=b'{"k": "\xc3\xa9"}',
        source_ip="10.0.0.1",
    )
    assert event["httpMethod"] == "POST"
    assert event["resource"] == "/openai/v1/models/{model}"
    assert event["pathParameters"] == {"model": "claude"}
    assert event["queryStringParameters"] == {"a": "2", "b": ""}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [""]}
    assert event["headers"]["x-multi"] == "two"
    assert event["multiValueHeaders"]["x-multi"] == ["one", "two"]
    assert event["body"] == '{"k": "é"}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["identity"]["sourceIp"] == "10.0.0.1"
    assert context["identity"]["userAgent"] == "pytest"
    assert context["resourcePath"] == "/openai/v1/models/{model}"
    json.dumps(event)  # a Lambda event is plain JSON


def test_rest_api_event_empty_and_binary_bodies() -> None:
    common: dict[str, Any] = {
        "method": "GET",
        "path": "/health",
        "resource": "/health",
        "path_parameters": {},
        "query_string": "",
        "headers": [],
        "source_ip": "127.0.0.1",
    }
    empty = rest_api_event(body=b"", **common)
    assert empty["body"] is None
    assert empty["headers"] is None
    assert empty["queryStringParameters"] is None
    assert empty["pathParameters"] is None
    binary = rest_api_event(body=b"\xff\x00\xfe", **common)
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\xff\x00\xfe"


def test_proxy_result() -> None:
    assert proxy_result(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": '{"ok": "é"}',
            "isBase64Encoded": False,
        }
    ) == (
        201,
        [(b"content-type", b"application/json"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")],
        '{"ok": "é"}'.encode(),
    )
    assert proxy_result({"body": base64.b64encode(b"\xff").decode(), "isBase64Encoded": True}) == (200, [], b"\xff")
    assert proxy_result({}) == (200, [], b"")


def test_event_through_the_lambda_handler_and_back(handlers: Handlers) -> None:
    event = rest_api_event(
        method="GET",
        path="/openai/v1/models/o4-mini",
        resource="/openai/v1/models/{model}",
        path_parameters={"model": "o4-mini"},
        query_string="",
        headers=[("host", "localhost"), ("accept", "application/json")],
        body=b"",
        source_ip="127.0.0.1",
    )
    status, headers, payload = proxy_result(handlers.models_handler(event, LambdaContext("ModelsFunction", 30)))
    assert status == 200
    assert (b"content-type", b"application/json") in headers
    assert json.loads(payload) == {"id": "o4-mini", "object": "model", "created": 1704067200, "owned_by": "clinvk"}


def test_lambda_context_remaining_time_decreases() -> None:
    context = LambdaContext("ChatCompletionsFunction", 30)
    first = context.get_remaining_time_in_millis()
    assert 29_000 < first <= 30_000
    time.sleep(0.05)
    second = context.get_remaining_time_in_millis()
    assert second <= first - 40
    assert context.function_name == "ChatCompletionsFunction"
    assert context.invoked_function_arn.endswith(":function:ChatCompletionsFunction")
    assert context.aws_request_id != LambdaContext("ChatCompletionsFunction", 30).aws_request_id
    assert LambdaContext("f", 0).get_remaining_time_in_millis() == 0


def test_lambda_context_deadline_is_fixed() -> None:
    """The deadline is a point in time: reading it later must not move it."""
    context = LambdaContext("ChatCompletionsFunction", 30)
    first = context.deadline_ms
    assert abs(first - (time.time() * 1000 + context.get_remaining_time_in_millis())) < 50
    time.sleep(0.2)
    assert abs(context.deadline_ms - first) < 50
    assert abs(context.deadline_ms - (time.time() * 1000 + context.get_remaining_time_in_millis())) < 50
